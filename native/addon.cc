// The addon's entry point: registers each source file's functions and the constants
// callers pass as flags. Constant values come from the system headers, never retyped.
#include <fcntl.h>
#include <limits.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "exports.h"
#include "uring-calls.h"

namespace zc {

void ExportConstants(Napi::Env env, Napi::Object exports) {
  Napi::Object c = Napi::Object::New(env);
  auto set = [&](const char* name, double value) { c.Set(name, Napi::Number::New(env, value)); };
  set("SPLICE_F_MOVE", SPLICE_F_MOVE);
  set("SPLICE_F_NONBLOCK", SPLICE_F_NONBLOCK);
  set("SPLICE_F_MORE", SPLICE_F_MORE);
  set("SPLICE_F_GIFT", SPLICE_F_GIFT);
  set("MSG_ZEROCOPY", MSG_ZEROCOPY);
  set("URING_PREPARED", uring::kPrepared);
  set("MSG_ERRQUEUE", MSG_ERRQUEUE);
  set("MSG_DONTWAIT", MSG_DONTWAIT);
  set("MSG_TRUNC", MSG_TRUNC);
  set("MSG_PEEK", MSG_PEEK);
  set("MSG_WAITALL", MSG_WAITALL);
  set("MSG_MORE", MSG_MORE);
  set("MSG_NOSIGNAL", MSG_NOSIGNAL);
  set("SOL_SOCKET", SOL_SOCKET);
  set("SO_ZEROCOPY", SO_ZEROCOPY);
  set("SO_SNDBUF", SO_SNDBUF);
  set("SO_RCVBUF", SO_RCVBUF);
  set("SO_RCVLOWAT", SO_RCVLOWAT);
  set("SO_REUSEPORT", SO_REUSEPORT);
  set("IPPROTO_IP", IPPROTO_IP);
  set("IPPROTO_IPV6", IPPROTO_IPV6);
  set("IPPROTO_TCP", IPPROTO_TCP);
  set("IPPROTO_UDP", IPPROTO_UDP);
  set("TCP_CORK", TCP_CORK);
  set("UDP_CORK", UDP_CORK);
  set("SO_EE_ORIGIN_ZEROCOPY", SO_EE_ORIGIN_ZEROCOPY);
  set("SO_EE_CODE_ZEROCOPY_COPIED", SO_EE_CODE_ZEROCOPY_COPIED);
  set("O_NONBLOCK", O_NONBLOCK);
  set("O_CLOEXEC", O_CLOEXEC);
  set("F_GETPIPE_SZ", F_GETPIPE_SZ);
  set("F_SETPIPE_SZ", F_SETPIPE_SZ);
  set("IOV_MAX", IOV_MAX);
  set("AF_INET", AF_INET);
  set("AF_INET6", AF_INET6);
  set("AF_UNIX", AF_UNIX);
  set("SOCK_STREAM", SOCK_STREAM);
  set("SOCK_DGRAM", SOCK_DGRAM);
  set("EPOLLIN", EPOLLIN);
  set("EPOLLOUT", EPOLLOUT);
  set("EPOLLERR", EPOLLERR);
  set("EPOLLHUP", EPOLLHUP);
  c.Freeze();
  exports.Set("constants", c);
}

}  // namespace zc

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  zc::ExportEnv(env, exports);
  zc::ExportSplice(env, exports);
  zc::ExportPipes(env, exports);
  zc::ExportMemory(env, exports);
  zc::ExportSocket(env, exports);
  zc::ExportSockopt(env, exports);
  zc::ExportSocketClaims(env, exports);
  zc::ExportErrors(env, exports);
  zc::ExportReactor(env, exports);
  zc::ExportMapping(env, exports);
  zc::ExportFileOpen(env, exports);
  zc::ExportUring(env, exports);
  zc::ExportUringProbe(env, exports);
  zc::ExportRelay(env, exports);
  zc::ExportUploadOpen(env, exports);
  zc::ExportConstants(env, exports);
  return exports;
}

NODE_API_MODULE(zerocopy, Init)
