// Socket options and the lifetime of the private fd the send layer owns: int options
// (setSocketOption/getSocketOption), SO_ZEROCOPY,
// receive buffers, what a socket is (domain, type, a cookie that names it for its whole
// life), TCP's acknowledged stream offset (to tell a release by ACK from one by reset),
// and dup, close, shutdown, disconnect and abortive close.
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>

#include "args.h"
#include "private-fds.h"
#include "errors.h"
#include "exports.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace zc {

namespace {

// setZeroCopy(fd, on): SO_ZEROCOPY. Throws (EOPNOTSUPP for AF_UNIX, ...).
Napi::Value SetZeroCopy(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int on = BoolArg(info, 1, "on") ? 1 : 0;
  if (setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &on, sizeof on) != 0) throw SystemError(info.Env(), errno, "setsockopt");
  return info.Env().Undefined();
}

// An int option's value (getsockopt(2)); throws the SystemError.
int IntOption(Napi::Env env, int fd, int level, int name) {
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, level, name, &value, &len) != 0) throw SystemError(env, errno, "getsockopt");
  return value;
}

// setReceiveBuffer(fd, bytes) -> the receive buffer the kernel now gives the socket.
// SO_RCVBUFFORCE first (CAP_NET_ADMIN may go past net.core.rmem_max), else SO_RCVBUF,
// which the kernel caps there. The kernel doubles the request for its bookkeeping, and
// the size read back says so.
Napi::Value SetReceiveBuffer(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  uint64_t bytes = LengthArg(info, 1, "bytes");
  int size = static_cast<int>(std::min<uint64_t>(bytes, INT32_MAX / 2));
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    if (errno != EPERM || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) {
      throw SystemError(info.Env(), errno, "setsockopt");
    }
  }
  return Napi::Number::New(info.Env(), IntOption(info.Env(), fd, SOL_SOCKET, SO_RCVBUF));
}

// setSocketOption(fd, level, name, value): setsockopt(2) with an int value, the shape of
// most options (UDP_CORK, SO_SNDBUF, SO_RCVLOWAT, ...). Only an int on this stack
// reaches the kernel, whatever the option: one that wants a larger struct gets EINVAL.
Napi::Value SetSocketOption(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int level = IntArg(info, 1, "level", 0, INT32_MAX);
  int name = IntArg(info, 2, "name", 0, INT32_MAX);
  int value = IntArg(info, 3, "value", INT32_MIN, INT32_MAX);
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) throw SystemError(info.Env(), errno, "setsockopt");
  return info.Env().Undefined();
}

// getSocketOption(fd, level, name) -> the option's int value (getsockopt(2) into an int;
// an option the kernel answers with fewer bytes is zero-extended).
Napi::Value GetSocketOption(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int level = IntArg(info, 1, "level", 0, INT32_MAX);
  int name = IntArg(info, 2, "name", 0, INT32_MAX);
  return Napi::Number::New(info.Env(), IntOption(info.Env(), fd, level, name));
}

// socketIdentity(fd) -> { domain, type, protocol, key, inode }. ENOTSOCK for non-sockets.
// `key` names the kernel socket for its whole life, whatever fd refers to it: the
// socket cookie (SO_COOKIE, never reused while the system runs), or on kernels without
// it the sockfs inode. `inode` is what /proc/self/fd links show ("socket:[inode]").
Napi::Value SocketIdentity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  // statx (glibc 2.28), not fstat: newer glibc headers bind fstat to fstat64@GLIBC_2.33,
  // past the floor this binary keeps (test:package checks the symbol versions).
  struct statx st{};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO, &st) != 0) throw SystemError(env, errno, "statx");
  if (!S_ISSOCK(st.stx_mode)) throw SystemError(env, ENOTSOCK, "getsockopt");
  Napi::Object out = Napi::Object::New(env);
  out.Set("domain", IntOption(env, fd, SOL_SOCKET, SO_DOMAIN));
  out.Set("type", IntOption(env, fd, SOL_SOCKET, SO_TYPE));
  out.Set("protocol", IntOption(env, fd, SOL_SOCKET, SO_PROTOCOL));
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  const bool hasCookie = getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 && len == sizeof cookie;
  // stx_ino is an unsigned long long: std::to_string of that type instantiates a table
  // that is a GNU_UNIQUE symbol, and glibc never unloads a library using one (a worker's
  // addon must unload: test/workers). uint64_t (unsigned long here) does not.
  const uint64_t inode = st.stx_ino;
  out.Set("key", hasCookie ? "c" + std::to_string(cookie) : "i" + std::to_string(inode));
  out.Set("inode", Napi::Number::New(env, static_cast<double>(inode)));
  return out;
}

bool ReadTcpInfo(int fd, tcp_info& ti) {
  socklen_t len = sizeof ti;
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
         len >= offsetof(tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked;
}

// tcpStreamOffset(fd) -> bytes written to the TCP stream so far (acknowledged + still
// queued), or -errno. Exact: the acknowledged count is read on both sides of the queue
// size and the pair is retried until no ACK came in between.
Napi::Value TcpStreamOffset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  tcp_info before{}, after{};
  for (int tries = 0; tries < 16; tries++) {
    int queued = 0;
    if (!ReadTcpInfo(fd, before) || ioctl(fd, SIOCOUTQ, &queued) != 0 || !ReadTcpInfo(fd, after)) {
      return Napi::Number::New(env, -(errno != 0 ? errno : EOPNOTSUPP));
    }
    if (before.tcpi_bytes_acked == after.tcpi_bytes_acked) {
      return Napi::Number::New(env, static_cast<double>(after.tcpi_bytes_acked + static_cast<uint64_t>(queued)));
    }
  }
  return Napi::Number::New(env, -EAGAIN);
}

// tcpAckState(fd, out: Float64Array(2)) -> 0 or -errno; out = [bytes acknowledged, tcpi_state].
Napi::Value TcpAckState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  double* out = TypedArrayArg(info, 1, "out", napi_float64_array, "Float64Array", 2).As<Napi::Float64Array>().Data();
  tcp_info ti{};
  if (!ReadTcpInfo(fd, ti)) return Napi::Number::New(env, -(errno != 0 ? errno : EOPNOTSUPP));
  out[0] = static_cast<double>(ti.tcpi_bytes_acked);
  out[1] = ti.tcpi_state;
  return Napi::Number::New(env, 0);
}

// dupFd(fd, private = true, ours = false) -> a close-on-exec duplicate that the caller
// owns. A private one (the package's own: closed with closeFd or abortiveClose) sits
// above the floor of private-fds.h and refuses to duplicate another private fd (EBADF)
// unless `ours` says `fd` is one (then it must be); a public one (raw.dup, for the
// user) takes the lowest free number as dup(2) does.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  bool priv = info.Length() < 2 || info[1].IsUndefined() || info[1].ToBoolean().Value();
  bool ours = info.Length() >= 3 && info[2].ToBoolean().Value();
  int dup = !priv ? DupCallerFd(fd) : ours ? DupOwnFd(fd) : DupPrivateFd(fd);
  if (dup < 0) throw SystemError(info.Env(), errno, "fcntl");
  return Napi::Number::New(info.Env(), dup);
}

// privateFds() -> every fd the package holds privately now (native/private-fds.h), for
// tests: each one must be open.
Napi::Value PrivateFdList(const Napi::CallbackInfo& info) {
  std::vector<int> fds = PrivateFds();
  Napi::Array out = Napi::Array::New(info.Env(), fds.size());
  for (size_t i = 0; i < fds.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), fds[i]));
  return out;
}

// closeFd(fd): close(2). EINTR is not retried (Linux has closed the fd anyway).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  if (ClosePrivateFd(fd) != 0 && errno != EINTR) throw SystemError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// shutdownSocket(fd, how): how is 0 (SHUT_RD), 1 (SHUT_WR) or 2 (SHUT_RDWR).
Napi::Value ShutdownSocket(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  uint32_t how = UintArg(info, 1, "how", SHUT_RDWR);
  if (shutdown(fd, static_cast<int>(how)) != 0) throw SystemError(info.Env(), errno, "shutdown");
  return info.Env().Undefined();
}

// disconnect(fd) -> 0 or -errno. connect(AF_UNSPEC): a TCP connection is reset (RST to
// the peer) and its queues purged at once, whatever other fds still refer to it, so the
// kernel releases every page it held for it; the purged sends' completions follow.
Napi::Value Disconnect(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  int r = connect(fd, &unspec, sizeof unspec);
  return Napi::Number::New(info.Env(), r == 0 ? 0 : -errno);
}

// abortiveClose(fd): SO_LINGER {1, 0} then close: the kernel drops unsent data and
// resets the connection, freeing (and so releasing the pages of) every queued skb.
Napi::Value AbortiveClose(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);  // not a socket: plain close
  if (ClosePrivateFd(fd) != 0 && errno != EINTR) throw SystemError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

}  // namespace

void ExportSockopt(Napi::Env env, Napi::Object exports) {
  exports.Set("setZeroCopy", Napi::Function::New(env, SetZeroCopy, "setZeroCopy"));
  exports.Set("setSocketOption", Napi::Function::New(env, SetSocketOption, "setSocketOption"));
  exports.Set("getSocketOption", Napi::Function::New(env, GetSocketOption, "getSocketOption"));
  exports.Set("setReceiveBuffer", Napi::Function::New(env, SetReceiveBuffer, "setReceiveBuffer"));
  exports.Set("socketIdentity", Napi::Function::New(env, SocketIdentity, "socketIdentity"));
  exports.Set("tcpStreamOffset", Napi::Function::New(env, TcpStreamOffset, "tcpStreamOffset"));
  exports.Set("tcpAckState", Napi::Function::New(env, TcpAckState, "tcpAckState"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("privateFds", Napi::Function::New(env, PrivateFdList, "privateFds"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("shutdownSocket", Napi::Function::New(env, ShutdownSocket, "shutdownSocket"));
  exports.Set("disconnect", Napi::Function::New(env, Disconnect, "disconnect"));
  exports.Set("abortiveClose", Napi::Function::New(env, AbortiveClose, "abortiveClose"));
}

}  // namespace zc
