// Per-environment state. Every Node environment that loads the addon (the main thread
// and each worker_threads Worker) gets its own EnvState as Node-API instance data, and
// everything native it makes is torn down with that environment, never with another.
//
// Teardown order, for a worker that is terminated (and for the main thread at exit):
//  1. Node stops the environment: JS can no longer run (napi calls that would run JS
//     fail), but the loop still turns, so thread-pool work and poll callbacks can still
//     arrive, and JS already running may still call in. A Napi::Error thrown then
//     cannot be thrown into JS: NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (binding.gyp)
//     drops it instead of letting it escape into Node (std::terminate). The reactor
//     checks the status of its callback itself (reactor.cc).
//  2. Node closes its own handles and runs the loop until they are closed and every
//     queued thread-pool work item has completed.
//  3. Cleanup hooks, newest first: EnvState's closes the fds JS handed over (adoptFd);
//     each Reactor's async cleanup hook closes its uv_poll_t and epoll fd, and Node
//     keeps the loop turning until that close callback has run.
//  4. Finalizers of every remaining object (Mapping unmaps, Reactor forgets its poll),
//     then the instance data (EnvState) itself.
//  5. Node dlclose()s the addon. Nothing of ours may run after that: no pending close
//     callback, no uv handle, no thread-pool work.
#pragma once

#include <napi.h>

#include <unordered_map>

namespace zc {

struct EnvState {
  // The Mapping class of this environment (each environment has its own).
  Napi::FunctionReference mappingClass;
  // fds that JS owns (the private socket duplicates of attached sockets) and that JS
  // cannot close any more once the environment stops: closed by the cleanup hook. The
  // value says the socket sends zero-copy through io_uring (no SO_ZEROCOPY to tell).
  std::unordered_map<int, bool> adoptedFds;
  bool tornDown = false;

  static EnvState& Of(Napi::Env env);
};

}  // namespace zc
