{
  "variables": {
    "asan%": 0
  },
  "targets": [
    {
      "target_name": "zerocopy",
      "sources": [
        "native/addon.cc",
        "native/args.cc",
        "native/compat.cc",
        "native/env.cc",
        "native/errors.cc",
        "native/file-open.cc",
        "native/mapping.cc",
        "native/memory.cc",
        "native/pipes.cc",
        "native/private-fds.cc",
        "native/reactor.cc",
        "native/relay.cc",
        "native/relay_loop.cc",
        "native/socket.cc",
        "native/socket-claims.cc",
        "native/sockopt.cc",
        "native/syscall.cc",
        "native/splice.cc",
        "native/uring.cc",
        "native/uring-buffers.cc",
        "native/uring-calls.cc",
        "native/uring-probe.cc",
        "native/uring-ring.cc",
        "native/upload-open.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["asan==1", {
          "defines": ["NODE_ADDON_API_ENABLE_TYPE_CHECK_ON_AS"],
          "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
          "ldflags": ["-fsanitize=address,undefined"]
        }]
      ]
    }
  ]
}
