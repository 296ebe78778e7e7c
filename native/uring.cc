// The io_uring engine's ring: one per Node environment (lib/uring.ts makes it), through
// which the sends of every socket on the io_uring engine go as IORING_OP_SEND_ZC /
// SENDMSG_ZC, each with IORING_SEND_ZC_REPORT_USAGE.
//
// Every send call here is synchronous, like sendmsg(2): it fills the SQEs, enters the
// kernel once, and returns their results. That holds because every SQE carries
// MSG_DONTWAIT: the kernel issues it inline, during io_uring_enter, and a socket with
// no room fails it with EAGAIN instead of parking it for later. So the kernel reads the
// caller's iovecs and msghdr only during the call, and the send state machine above
// (lib/send-channel.ts) keeps its meaning unchanged: bytes and calls now, EAGAIN ->
// wait for room, an error -> the request's error. Several SQEs of one call (a sendEach
// batch) are linked (IOSQE_IO_LINK) with MSG_WAITALL: they run in order, and the first
// that fails or sends short on a stream cancels the rest, as a sendmsg loop would stop.
//
// What comes later is the release: each SEND_ZC whose result carries IORING_CQE_F_MORE
// posts one notification CQE (IORING_CQE_F_NOTIF) when the kernel let go of the pages,
// with IORING_NOTIF_USAGE_ZC_COPIED set if it copied after all. Notifications go to the
// ring, never to the socket's error queue (so libuv, which reads UDP error queues from
// 1.52 on, never sees them). They wake the event loop through an eventfd registered
// with the ring and watched by the reactor's epoll (lib/uring.ts), without a thread
// hop; reap() hands them to JS. user_data is (token << 32) | seq: the socket's token
// and the send's own sequence number, both chosen by JS.
//
// Lifetime: the ring and the eventfd belong to the environment; its cleanup hook
// closes them (a terminated worker), the finalizer otherwise. Closing the ring while
// notifications are outstanding is safe: the kernel holds its own page references.
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "mapping.h"
#include "uring-buffers.h"
#include "uring-calls.h"
#include "uring-ring.h"
#include "private-fds.h"

namespace zc {

namespace {

constexpr unsigned kSqEntries = 256;  // sendEach's batch (kMaxMessagesPerCall in socket.cc)
constexpr unsigned kCqEntries = 8192;
constexpr unsigned kMaxMessagesPerCall = 256;
constexpr unsigned kMaxChunksPerCall = 64;  // of a file window (16 MiB at 256 KiB)
constexpr unsigned kBufferSlots = 1024;  // registered buffers per environment
constexpr uint64_t kMaxRegistered = uint64_t(1) << 30;  // the kernel's limit per buffer

using uring::Completion;
using uring::kPrepared;

class Uring final : public Napi::ObjectWrap<Uring> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Uring",
                       {
                           InstanceMethod<&Uring::Send>("send"),
                           InstanceMethod<&Uring::SendEach>("sendEach"),
                           InstanceMethod<&Uring::SendMapped>("sendMapped"),
                           InstanceMethod<&Uring::Reap>("reap"),
                           InstanceMethod<&Uring::Flush>("flush"),
                           InstanceMethod<&Uring::Close>("close"),
                           InstanceMethod<&Uring::AllocRegistered>("allocRegistered"),
                           InstanceAccessor<&Uring::EventFd>("eventFd"),
                           InstanceAccessor<&Uring::RingFd>("fd"),
                           InstanceAccessor<&Uring::Submits>("submits"),
                       });
  }

  // new Uring(): the ring, and an eventfd the kernel signals on new completions.
  explicit Uring(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Uring>(info) {
    Napi::Env env = info.Env();
    int r = ring_.Open(kSqEntries, kCqEntries);
    if (r < 0) throw SystemError(env, -r, "io_uring_setup");
    eventFd_ = KeepPrivateFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (eventFd_ < 0) {
      const int err = errno;
      ring_.Close();
      throw SystemError(env, err, "eventfd");
    }
    r = uring::Register(ring_.fd(), IORING_REGISTER_EVENTFD, &eventFd_, 1);
    if (r < 0) {
      Shutdown();
      throw SystemError(env, -r, "io_uring_register");
    }
    // Registered memory needs Linux 5.19 (sparse tables); without it sends still work.
    if (buffers_->Open(ring_.fd(), kBufferSlots) < 0) buffers_->Detach();
    napi_add_env_cleanup_hook(env, OnEnvTeardown, this);
    hooked_ = true;
  }

  ~Uring() override {
    if (hooked_) napi_remove_env_cleanup_hook(Env(), OnEnvTeardown, this);
    Shutdown();
    buffers_->Release();
  }

 private:
  static void OnEnvTeardown(void* arg) {
    auto* self = static_cast<Uring*>(arg);
    self->hooked_ = false;
    self->Shutdown();
  }

  void Shutdown() {
    buffers_->Detach();  // buffers still alive are only unmapped when collected
    ring_.Close();
    if (eventFd_ >= 0) ClosePrivateFd(eventFd_);
    eventFd_ = -1;
  }

  void CheckOpen(Napi::Env env) const {
    if (ring_.fd() < 0) ThrowTypeError(env, "ERR_INVALID_STATE", "The io_uring ring is closed");
  }

  Napi::Value EventFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), eventFd_); }
  Napi::Value RingFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ring_.fd()); }
  Napi::Value Submits(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ring_.submits()); }

  // The words JS reads after every send: out[0] bytes, out[1] send calls (each of which
  // will post a notification), out[2] SQEs used (sequence numbers taken), out[3]
  // completions waiting for reap(), out[4] of those calls, the ones that sent from
  // registered buffers. Returns what the call returns.
  double Report(double* out, const uring::CallReport& rep) const {
    out[0] = rep.bytes;
    out[1] = rep.calls;
    out[2] = rep.used;
    out[3] = static_cast<double>(stash_.size());
    out[4] = rep.fixed;
    return rep.r;
  }

  // The call just prepared: deferred, it waits for flush() (out[2] says the SQEs it
  // took; it returns kPrepared); else it goes now, with every call prepared before it,
  // and returns its own result.
  Napi::Value Finish(Napi::Env env, unsigned used, double* out, bool deferred = false) {
    if (deferred) {
      out[0] = out[1] = out[3] = out[4] = 0;
      out[2] = used;
      return Napi::Number::New(env, kPrepared);
    }
    return Napi::Number::New(env, MakeNow(out));
  }

  // Makes the call just prepared now, with every call prepared before it; its result.
  double MakeNow(double* out) {
    calls_.Flush(concluded_);
    const uring::CallReport mine = concluded_.back();  // prepared last, concluded last
    concluded_.pop_back();
    return Report(out, mine);
  }

  // The first arguments of every send: (token, seq, fd), on an open ring.
  struct Target {
    uint32_t token;
    uint32_t seq;
    int fd;
  };
  Target TargetArgs(const Napi::CallbackInfo& info) const {
    CheckOpen(info.Env());
    return Target{UintArg(info, 0, "token", UINT32_MAX), UintArg(info, 1, "seq", UINT32_MAX), FdArg(info, 2, "fd")};
  }

  // The caller's send flags, plus what every SQE here carries (see the top of the file).
  static unsigned SendFlagsArg(const Napi::CallbackInfo& info, size_t index) {
    return FlagsArg(info, index, "flags") | MSG_DONTWAIT | MSG_WAITALL;
  }

  // send(token, seq, fd, data, flags, out: Float64Array) -> bytes, or -errno. One
  // SEND_ZC (one view) or SENDMSG_ZC (several) with `flags` (MSG_DONTWAIT is added).
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto [token, seq, fd] = TargetArgs(info);
    const unsigned flags = SendFlagsArg(info, 4);
    double* out = OutArg(info, 5);
    std::vector<iovec> iov;
    ByteViewsArg(info, 3, "data", iov);  // last: no JS runs between this and the send (never deferred)
    return Finish(env, calls_.AddSingle(token, seq, fd, std::move(iov), flags), out);
  }

  // sendMapped(token, seq, fd, mapping, offset, length, flags, out, chunk) -> bytes,
  // or -errno: [offset, offset + length) of a file mapping (mapping.cc; EFAULT past a
  // truncated end) as a linked chain of SEND_ZCs of `chunk` bytes each (at most 64),
  // each its own call with its own notification: a file window in one io_uring_enter.
  Napi::Value SendMapped(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto [token, seq, fd] = TargetArgs(info);
    const unsigned flags = SendFlagsArg(info, 6);
    double* out = OutArg(info, 7);
    const uint32_t chunk = UintArg(info, 8, "chunk", UINT32_MAX);
    if (chunk == 0) ThrowRangeError(env, "ERR_OUT_OF_RANGE", "The \"chunk\" must be > 0");
    uint64_t length = 0;
    const char* start = MappedRangeArg(info, 3, length);
    std::vector<iovec> iov;
    for (uint64_t at = 0; at < length && iov.size() < kMaxChunksPerCall; at += chunk) {
      iov.push_back(iovec{const_cast<char*>(start + at), static_cast<size_t>(std::min<uint64_t>(chunk, length - at))});
    }
    calls_.AddLinked(token, seq, fd, std::move(iov), flags, false);
    const double done = MakeNow(out);
    return Napi::Number::New(env, done < 0 ? done : out[0]);  // a file window reports bytes, not chunks
  }

  // sendEach(token, seq, fd, messages, first, firstOffset, flags, datagram, out, defer?)
  //   -> messages completed (>= 0), or -errno when the first send failed; with `defer`
  //   the call is only prepared (-> kPrepared) and made at the next flush(), or at the
  //   next send made at once, whichever comes first.
  // What trySendEach (socket.cc) does with sendmmsg or a sendmsg loop, as one chain of
  // linked SEND_ZCs: messages[first] (from byte firstOffset), messages[first + 1], ...
  // up to 256, each its own send (own notification).
  Napi::Value SendEach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto [token, seq, fd] = TargetArgs(info);
    const uint32_t first = UintArg(info, 4, "first", UINT32_MAX);
    const uint64_t firstOffset = LengthArg(info, 5, "firstOffset");
    const unsigned flags = SendFlagsArg(info, 6);
    const bool datagram = BoolArg(info, 7, "datagram");
    double* out = OutArg(info, 8);
    const bool deferred = info.Length() > 9 && BoolArg(info, 9, "defer");
    std::vector<iovec> iov;
    // Last: no JS runs between this and the send, or, deferred, until the tick's flush
    // (lib/uring.ts runs no user callback meanwhile, and the request holds the memory).
    MessageListArg(info, 3, "messages", first, firstOffset, kMaxMessagesPerCall, iov);
    return Finish(env, calls_.AddLinked(token, seq, fd, std::move(iov), flags, datagram), out, deferred);
  }

  // flush(reports: Float64Array) -> calls reported: submits every prepared call in one
  // io_uring_enter and writes, for every deferred call concluded since the last
  // flush (in the order they were prepared), 6 words: token, result, bytes, calls,
  // SQEs used, calls from registered buffers. Call again while it fills `reports`.
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Float64Array words = TypedArrayArg(info, 0, "reports", napi_float64_array, "Float64Array", 6).As<Napi::Float64Array>();
    calls_.Flush(concluded_);
    const size_t n = std::min(concluded_.size(), words.ElementLength() / 6);
    double* w = words.Data();
    for (size_t i = 0; i < n; i++) {
      const uring::CallReport& rep = concluded_[i];
      double* o = w + 6 * i;
      o[0] = rep.token;
      o[1] = rep.r;
      o[2] = rep.bytes;
      o[3] = rep.calls;
      o[4] = rep.used;
      o[5] = rep.fixed;
    }
    concluded_.erase(concluded_.begin(), concluded_.begin() + static_cast<std::ptrdiff_t>(n));
    return Napi::Number::New(env, static_cast<double>(n));
  }

  // reap(out: Uint32Array) -> releases written, 4 words each: token, first seq, last
  // seq, copied (0/1). The stash first (in order), then the CQ. Only notification CQEs
  // are releases (a result that was not collected by its call belongs to a call that
  // failed as a whole, and means nothing now). Consecutive sequence numbers of one
  // socket with the same copied flag come as one range, as the error queue's
  // notifications do: a batch of 256 sends is usually one entry. Call again while it
  // fills `out`.
  Napi::Value Reap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    Napi::Uint32Array words = TypedArrayArg(info, 0, "out", napi_uint32_array, "Uint32Array", 4).As<Napi::Uint32Array>();
    const size_t capacity = words.ElementLength() / 4;
    // Through the calls: a result of a call submitted early (a full SQ) is its own.
    calls_.Collect();
    // A full CQ overflowed into the kernel's list: bring those in too, or they would
    // wait for the next send (the eventfd fired for them already).
    for (int i = 0; i < 64 && ring_.FlushOverflow(); i++) calls_.Collect();
    uint32_t* w = words.Data();
    size_t n = 0;
    size_t used = 0;
    for (; used < stash_.size(); used++) {
      const Completion& c = stash_[used];
      if (!(c.flags & IORING_CQE_F_NOTIF)) continue;
      const uint32_t copied = (static_cast<uint32_t>(c.res) & IORING_NOTIF_USAGE_ZC_COPIED) ? 1 : 0;
      if (n > 0 && w[4 * (n - 1)] == c.token && w[4 * (n - 1) + 2] + 1 == c.seq && w[4 * (n - 1) + 3] == copied) {
        w[4 * (n - 1) + 2] = c.seq;
        continue;
      }
      if (n == capacity) break;
      w[4 * n] = c.token;
      w[4 * n + 1] = c.seq;
      w[4 * n + 2] = c.seq;
      w[4 * n + 3] = copied;
      n++;
    }
    stash_.erase(stash_.begin(), stash_.begin() + static_cast<std::ptrdiff_t>(used));
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  // allocRegistered(size) -> ArrayBuffer of `size` bytes (zeroed) whose pages are
  // registered with the ring; throws a SystemError (ENOSPC: no free slot, ENOMEM:
  // RLIMIT_MEMLOCK, EBADF: this kernel has no sparse buffer tables).
  Napi::Value AllocRegistered(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    const uint64_t size = LengthArg(info, 0, "size");
    if (size == 0 || size > kMaxRegistered) {
      ThrowRangeError(env, "ERR_OUT_OF_RANGE", "The \"size\" of registered memory must be > 0 and <= 2^30");
    }
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t length = (static_cast<size_t>(size) + page - 1) / page * page;
    int err = 0;
    void* base = buffers_->Allocate(length, err);
    if (base == nullptr) throw SystemError(env, err, "io_uring_register");
    napi_value ab;
    napi_status st = napi_create_external_arraybuffer(env, base, static_cast<size_t>(size), FreeRegistered, buffers_, &ab);
    if (st != napi_ok) {
      buffers_->Free(base);
      throw Napi::Error::New(env, "zerocopy: could not wrap registered memory in an ArrayBuffer");
    }
    buffers_->Retain();  // the ArrayBuffer's finalizer lets go
    return Napi::Value(env, ab);
  }

  // The ArrayBuffer was collected (or its environment ended): no send of it is in
  // flight any more (a request holds its views until released).
  static void FreeRegistered(napi_env, void* data, void* hint) {
    auto* table = static_cast<uring::BufferTable*>(hint);
    table->Free(data);
    table->Release();
  }

  static double* OutArg(const Napi::CallbackInfo& info, size_t index) {
    return TypedArrayArg(info, index, "out", napi_float64_array, "Float64Array", 5).As<Napi::Float64Array>().Data();
  }

  uring::Ring ring_;
  // Held by the ring and by every registered ArrayBuffer (uring-buffers.h). Not a
  // std::shared_ptr: std::make_shared's type tag is a GNU_UNIQUE symbol (glibc then never
  // unloads the addon after a worker), and its counter needs GLIBC_2.32.
  uring::BufferTable* buffers_ = uring::BufferTable::Create();
  int eventFd_ = -1;
  bool hooked_ = false;
  std::vector<Completion> stash_;
  uring::CallBatch calls_{ring_, buffers_, stash_};
  std::vector<uring::CallReport> concluded_;  // deferred calls concluded, not yet flushed to JS
};

}  // namespace

void ExportUring(Napi::Env env, Napi::Object exports) {
  exports.Set("Uring", Uring::Define(env));
}

}  // namespace zc
