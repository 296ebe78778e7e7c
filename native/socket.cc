// Sends and receives on sockets: sendmsg with any flags (from views, or from a file
// mapping), sendEach's batches (sendmmsg, or a sendmsg loop for streams), recv with any
// flags, recvmmsg, and reading the error queue where MSG_ZEROCOPY completions arrive. Every send goes
// through SendMsg/SendMmsg (syscall.cc). Socket options and the private fd's lifetime
// are in sockopt.cc.
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
#include "mapping.h"
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
  return SendMsg(fd, msg, static_cast<int>(flags));
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

// trySendMapped(fd, mapping, offset, length, flags) -> bytes, or -errno. The kernel
// reads the file mapping (mapping.cc); past a truncated end of file that is EFAULT,
// never SIGBUS.
Napi::Value TrySendMapped(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  unsigned flags = FlagsArg(info, 4, "flags");
  uint64_t length = 0;
  const char* start = MappedRangeArg(info, 1, length);
  iovec iov{const_cast<char*>(start), length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  return Napi::Number::New(info.Env(), static_cast<double>(SendMsg(fd, msg, static_cast<int>(flags))));
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
  uint32_t first = UintArg(info, 2, "first", UINT32_MAX);
  uint64_t firstOffset = LengthArg(info, 3, "firstOffset");
  unsigned flags = FlagsArg(info, 4, "flags");
  const bool datagram = BoolArg(info, 5, "datagram");
  double* out = TypedArrayArg(info, 6, "out", napi_float64_array, "Float64Array", 2).As<Napi::Float64Array>().Data();
  std::vector<iovec> iov;
  const uint32_t count = MessageListArg(info, 1, "messages", first, firstOffset, kMaxMessagesPerCall, iov);
  uint64_t bytes = 0;
  uint32_t calls = 0;
  uint32_t done = 0;
  int error = 0;
  if (datagram && count > 0) {
    std::vector<mmsghdr> msgs = OneMessageEach(iov);
    const int r = SendMmsg(fd, msgs.data(), count, static_cast<int>(flags));
    if (r < 0) {
      error = -r;
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
      const ssize_t r = SendMsg(fd, msg, static_cast<int>(flags));
      if (r < 0) {
        error = static_cast<int>(-r);
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

// recv(fd, buffer | null, flags, length) -> bytes; throws a SystemError (EAGAIN too).
// recvmsg(2) into the views of `buffer`, one iovec each. With `null` the kernel gets a
// NULL iovec of `length` bytes (default 0): with MSG_TRUNC a TCP socket discards up to
// `length` queued bytes without copying them, and a datagram socket (length 0) drops
// its next datagram and returns its full length. Nothing is ever written at NULL: the
// kernel's first write there faults (EFAULT), since no process maps page zero.
Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  unsigned flags = FlagsArg(info, 2, "flags");
  std::vector<iovec> iov;
  if (info[1].IsNull()) {
    const uint64_t length = info[3].IsUndefined() ? 0 : LengthArg(info, 3, "length");
    iov.push_back({nullptr, static_cast<size_t>(length)});
  } else {
    if (!info[3].IsUndefined()) {
      ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                     "The \"length\" argument must be undefined when a buffer is given (its size is the length)");
    }
    ByteViewsArg(info, 1, "buffer", iov);  // last: no JS runs between this and the call
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ssize_t r;
  do {
    r = recvmsg(fd, &msg, static_cast<int>(flags));
  } while (r < 0 && errno == EINTR);
  if (r < 0) throw SystemError(env, errno, "recvmsg");
  return Napi::Number::New(env, static_cast<double>(r));
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

}  // namespace

void ExportSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("send", Napi::Function::New(env, Send, "send"));
  exports.Set("trySend", Napi::Function::New(env, TrySend, "trySend"));
  exports.Set("trySendMapped", Napi::Function::New(env, TrySendMapped, "trySendMapped"));
  exports.Set("trySendEach", Napi::Function::New(env, TrySendEach, "trySendEach"));
  exports.Set("recv", Napi::Function::New(env, Recv, "recv"));
  exports.Set("receiveMany", Napi::Function::New(env, ReceiveMany, "receiveMany"));
  exports.Set("readErrorQueue", Napi::Function::New(env, ReadErrorQueue, "readErrorQueue"));
}

}  // namespace zc
