// Sockets for MSG_ZEROCOPY: enabling SO_ZEROCOPY, sendmsg with any flags, reading the
// error queue, and the few fd operations the completion layer needs on the private
// duplicate it owns (dup, close, shutdown, linger).
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "syscall.h"

namespace zc {

namespace {

// sendmsg(fd, data, flags) over the iovecs of `data`, retrying EINTR: bytes or -errno.
ssize_t SendViews(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  unsigned flags = FlagsArg(info, 2, "flags");
  std::vector<iovec> iov;
  ByteViewsArg(info, 1, "data", iov);
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ssize_t r;
  do {
    r = OrErrno(sendmsg(fd, &msg, static_cast<int>(flags)));
  } while (r == -EINTR);
  return r;
}

// send(fd, data, flags) -> bytes; throws a SystemError.
Napi::Value Send(const Napi::CallbackInfo& info) {
  ssize_t r = SendViews(info);
  if (r < 0) throw SystemError(info.Env(), static_cast<int>(-r), "sendmsg");
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

// trySend(fd, data, flags) -> bytes, or -errno. The completion layer's hot path: an
// EAGAIN or ENOBUFS is routine there, and building an Error for it would cost more
// than the send.
Napi::Value TrySend(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(SendViews(info)));
}

// One message per iovec, for sendmmsg/recvmmsg; `iov` must outlive the result.
std::vector<mmsghdr> OneMessageEach(std::vector<iovec>& iov) {
  std::vector<mmsghdr> msgs(iov.size());
  for (size_t i = 0; i < iov.size(); i++) {
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  return msgs;
}

// At most this many messages per trySendEach call (the kernel's own cap for sendmmsg
// is UIO_MAXIOV, 1024): bounds the iovec array and the time spent in one call.
constexpr uint32_t kMaxMessagesPerCall = 256;

// trySendEach(fd, messages, first, firstOffset, flags, datagram, out: Float64Array)
//   -> messages completed (>= 0), or -errno when the first call sent nothing.
// Sends messages[first] (from byte firstOffset), messages[first + 1], ... each with its
// own send call, so each takes its own MSG_ZEROCOPY id, as a loop of send() would, but
// in one crossing from JS. Datagram sockets use sendmmsg (each message one datagram,
// all or nothing). Stream sockets loop on sendmsg and stop at the first short send,
// which `out` reveals: out[0] = bytes sent, out[1] = send calls made (the ids taken,
// with MSG_ZEROCOPY; an empty datagram is a call, a skipped empty stream write is not). An error after some sends stops the loop and is left
// for the next call to meet.
Napi::Value TrySendEach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  uint32_t first = FlagsArg(info, 2, "first");
  uint64_t firstOffset = LengthArg(info, 3, "firstOffset");
  unsigned flags = FlagsArg(info, 4, "flags");
  const bool datagram = BoolArg(info, 5, "datagram");
  double* out = TypedArrayArg(info, 6, "out", napi_float64_array, "Float64Array", 2).As<Napi::Float64Array>().Data();
  std::vector<iovec> iov;
  const uint32_t count = ByteViewListArg(info, 1, "messages", first, kMaxMessagesPerCall, iov);
  if (count > 0 && firstOffset > iov[0].iov_len) {
    ThrowRangeError(env, "ERR_OUT_OF_RANGE", "The \"firstOffset\" is past the end of the first message");
  }
  if (count > 0) {
    iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + firstOffset;
    iov[0].iov_len -= firstOffset;
  }
  uint64_t bytes = 0;
  uint32_t calls = 0;
  uint32_t done = 0;
  int error = 0;
  if (datagram && count > 0) {
    std::vector<mmsghdr> msgs = OneMessageEach(iov);
    int r;
    do {
      r = sendmmsg(fd, msgs.data(), count, static_cast<int>(flags));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      error = errno;
    } else {
      done = static_cast<uint32_t>(r);
      // Every datagram sent is a call that took an id, an empty one too: the kernel
      // counts the UDP header in the length it checks (tested).
      calls = done;
      for (uint32_t i = 0; i < done; i++) bytes += msgs[i].msg_len;
    }
  } else {
    for (; done < count; done++) {
      if (iov[done].iov_len == 0) continue;  // nothing to send, no call, no id
      msghdr msg{};
      msg.msg_iov = &iov[done];
      msg.msg_iovlen = 1;
      ssize_t r;
      do {
        r = sendmsg(fd, &msg, static_cast<int>(flags));
      } while (r < 0 && errno == EINTR);
      if (r < 0) {
        error = errno;
        break;
      }
      bytes += static_cast<uint64_t>(r);
      calls++;
      if (static_cast<size_t>(r) < iov[done].iov_len) break;  // short: the rest waits for room
    }
  }
  out[0] = static_cast<double>(bytes);
  out[1] = calls;
  // Nothing sent and nothing skipped: the error is this call's answer.
  if (calls == 0 && done == 0 && error != 0) return Napi::Number::New(env, -error);
  return Napi::Number::New(env, done);
}

// receiveMany(fd, buffers, lengths: Uint32Array) -> datagrams read (0 when none is
// queued), or -errno. One non-blocking recvmmsg: datagram i lands in buffers[i] (cut to
// fit) and lengths[i] gets its full length (MSG_TRUNC), so small or empty buffers count
// datagrams without copying their payloads.
Napi::Value ReceiveMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  Napi::Uint32Array lengths = TypedArrayArg(info, 2, "lengths", napi_uint32_array, "Uint32Array", 0).As<Napi::Uint32Array>();
  const uint32_t max = static_cast<uint32_t>(std::min<size_t>(lengths.ElementLength(), kMaxMessagesPerCall));
  std::vector<iovec> iov;
  const uint32_t count = ByteViewListArg(info, 1, "buffers", 0, max, iov);
  if (count == 0) return Napi::Number::New(env, 0);
  std::vector<mmsghdr> msgs = OneMessageEach(iov);
  int r;
  do {
    r = recvmmsg(fd, msgs.data(), count, MSG_DONTWAIT | MSG_TRUNC, nullptr);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Napi::Number::New(env, errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno);
  uint32_t* out = lengths.Data();
  for (int i = 0; i < r; i++) out[i] = msgs[i].msg_len;
  return Napi::Number::New(env, r);
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
  int now = 0;
  socklen_t len = sizeof now;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &now, &len) != 0) throw SystemError(info.Env(), errno, "getsockopt");
  return Napi::Number::New(info.Env(), now);
}

// readErrorQueue(fd, out: Uint32Array) -> entries written (0 when the queue is empty),
// or -errno. Each entry is 4 words: origin | code << 8, ee_errno, ee_info, ee_data.
// For MSG_ZEROCOPY (origin 5) [ee_info, ee_data] is the inclusive range of completed
// send ids and code bit 0 (SO_EE_CODE_ZEROCOPY_COPIED) says the kernel copied.
Napi::Value ReadErrorQueue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  Napi::Uint32Array out = TypedArrayArg(info, 1, "out", napi_uint32_array, "Uint32Array", 0).As<Napi::Uint32Array>();
  const size_t capacity = out.ElementLength() / 4;
  uint32_t* words = out.Data();
  size_t entries = 0;
  while (entries < capacity) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(sock_extended_err) + sizeof(sockaddr_in6))];
    msghdr msg{};
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t r = recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (entries > 0) break;  // report what was read; the error shows next time
      return Napi::Number::New(env, -errno);
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      const bool isRecvErr = (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
                             (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR);
      if (!isRecvErr || c->cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) continue;
      sock_extended_err ee;
      std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
      uint32_t* w = words + entries * 4;
      w[0] = static_cast<uint32_t>(ee.ee_origin) | (static_cast<uint32_t>(ee.ee_code) << 8);
      w[1] = ee.ee_errno;
      w[2] = ee.ee_info;
      w[3] = ee.ee_data;
      entries++;
      break;  // one extended error per message
    }
  }
  return Napi::Number::New(env, static_cast<double>(entries));
}

// setZeroCopy(fd, on): SO_ZEROCOPY. Throws (EOPNOTSUPP for AF_UNIX, ...).
Napi::Value SetZeroCopy(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int on = BoolArg(info, 1, "on") ? 1 : 0;
  if (setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &on, sizeof on) != 0) throw SystemError(info.Env(), errno, "setsockopt");
  return info.Env().Undefined();
}

// socketKind(fd) -> { domain, type } (SO_DOMAIN, SO_TYPE); ENOTSOCK for non-sockets.
Napi::Value SocketKind(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int domain = 0, type = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) throw SystemError(info.Env(), errno, "getsockopt");
  len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) throw SystemError(info.Env(), errno, "getsockopt");
  Napi::Object kind = Napi::Object::New(info.Env());
  kind.Set("domain", domain);
  kind.Set("type", type);
  return kind;
}

// dupFd(fd) -> a close-on-exec duplicate that the caller owns.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) throw SystemError(info.Env(), errno, "fcntl");
  return Napi::Number::New(info.Env(), dup);
}

// closeFd(fd): close(2). EINTR is not retried (Linux has closed the fd anyway).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  if (close(fd) != 0 && errno != EINTR) throw SystemError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// shutdownSocket(fd, how): how is 0 (SHUT_RD), 1 (SHUT_WR) or 2 (SHUT_RDWR).
Napi::Value ShutdownSocket(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  uint32_t how = FlagsArg(info, 1, "how");
  if (how > SHUT_RDWR) ThrowRangeError(info.Env(), "ERR_OUT_OF_RANGE", "The value of \"how\" must be 0, 1 or 2");
  if (shutdown(fd, static_cast<int>(how)) != 0) throw SystemError(info.Env(), errno, "shutdown");
  return info.Env().Undefined();
}

// abortiveClose(fd): SO_LINGER {1, 0} then close: the kernel drops unsent data and
// resets the connection, freeing (and so releasing the pages of) every queued skb.
Napi::Value AbortiveClose(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);  // not a socket: plain close
  if (close(fd) != 0 && errno != EINTR) throw SystemError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// systemError(errno, syscall): the Error a failed syscall throws, for callers that got
// -errno from trySend (positive errno in, like the kernel's).
Napi::Value MakeSystemError(const Napi::CallbackInfo& info) {
  int err = static_cast<int>(FlagsArg(info, 0, "errno"));
  if (!info[1].IsString()) ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "The \"syscall\" argument must be of type string");
  std::string syscall = info[1].As<Napi::String>().Utf8Value();
  return SystemError(info.Env(), err, syscall.c_str()).Value();
}

}  // namespace

void ExportSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("send", Napi::Function::New(env, Send, "send"));
  exports.Set("trySend", Napi::Function::New(env, TrySend, "trySend"));
  exports.Set("trySendEach", Napi::Function::New(env, TrySendEach, "trySendEach"));
  exports.Set("receiveMany", Napi::Function::New(env, ReceiveMany, "receiveMany"));
  exports.Set("setReceiveBuffer", Napi::Function::New(env, SetReceiveBuffer, "setReceiveBuffer"));
  exports.Set("readErrorQueue", Napi::Function::New(env, ReadErrorQueue, "readErrorQueue"));
  exports.Set("setZeroCopy", Napi::Function::New(env, SetZeroCopy, "setZeroCopy"));
  exports.Set("socketKind", Napi::Function::New(env, SocketKind, "socketKind"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("shutdownSocket", Napi::Function::New(env, ShutdownSocket, "shutdownSocket"));
  exports.Set("systemError", Napi::Function::New(env, MakeSystemError, "systemError"));
  exports.Set("abortiveClose", Napi::Function::New(env, AbortiveClose, "abortiveClose"));
}

}  // namespace zc
