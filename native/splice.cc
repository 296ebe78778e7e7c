// splice, tee, vmsplice and sendfile: each exported twice, as a synchronous call that
// returns the byte count and as `<name>Async`, which runs the same call off the JS
// thread and returns a Promise (vmsplice is sync only, see below). Both share one argument reader per syscall, so the
// two forms cannot drift apart in what they accept.
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/uio.h>

#include <optional>

#include "args.h"
#include "exports.h"
#include "syscall.h"

namespace zc {

namespace {

// splice(fdIn, offIn, fdOut, offOut, length, flags?)
SyscallFn SpliceCall(const Napi::CallbackInfo& info, std::vector<int>& fds) {
  int fdIn = FdArg(info, 0, "fdIn");
  std::optional<int64_t> offIn = OffsetArg(info, 1, "offIn");
  int fdOut = FdArg(info, 2, "fdOut");
  std::optional<int64_t> offOut = OffsetArg(info, 3, "offOut");
  size_t length = LengthArg(info, 4, "length");
  unsigned flags = FlagsArg(info, 5, "flags");
  fds = {fdIn, fdOut};
  return [offIn, offOut, length, flags](const std::vector<int>& fd) -> ssize_t {
    // The kernel advances the offsets it is given; they are copies, so a retry after
    // EINTR (which moved nothing) starts from the caller's value again.
    loff_t in = offIn.value_or(0);
    loff_t out = offOut.value_or(0);
    return OrErrno(splice(fd[0], offIn ? &in : nullptr, fd[1], offOut ? &out : nullptr, length, flags));
  };
}

// tee(fdIn, fdOut, length, flags?)
SyscallFn TeeCall(const Napi::CallbackInfo& info, std::vector<int>& fds) {
  int fdIn = FdArg(info, 0, "fdIn");
  int fdOut = FdArg(info, 1, "fdOut");
  size_t length = LengthArg(info, 2, "length");
  unsigned flags = FlagsArg(info, 3, "flags");
  fds = {fdIn, fdOut};
  return [length, flags](const std::vector<int>& fd) -> ssize_t {
    return OrErrno(tee(fd[0], fd[1], length, flags));
  };
}

// sendfile(outFd, inFd, offset, count)
SyscallFn SendfileCall(const Napi::CallbackInfo& info, std::vector<int>& fds) {
  int outFd = FdArg(info, 0, "outFd");
  int inFd = FdArg(info, 1, "inFd");
  std::optional<int64_t> offset = OffsetArg(info, 2, "offset");
  size_t count = LengthArg(info, 3, "count");
  fds = {outFd, inFd};
  return [offset, count](const std::vector<int>& fd) -> ssize_t {
    off_t off = offset.value_or(0);
    return OrErrno(sendfile(fd[0], fd[1], offset ? &off : nullptr, count));
  };
}

// vmsplice(pipeFd, data, flags?): the views are read last (see ByteViewsArg).
// There is deliberately no vmspliceAsync: off-thread, the kernel would read user
// memory that JS could detach or free before the call runs. Callers that must not
// block use a non-blocking pipe or SPLICE_F_NONBLOCK and wait for writability.
SyscallFn VmspliceCall(const Napi::CallbackInfo& info, std::vector<int>& fds) {
  int pipeFd = FdArg(info, 0, "pipeFd");
  unsigned flags = FlagsArg(info, 2, "flags");
  std::vector<iovec> iov;
  ByteViewsArg(info, 1, "data", iov);
  fds = {pipeFd};
  return [iov = std::move(iov), flags](const std::vector<int>& fd) -> ssize_t {
    // splice and tee treat an O_NONBLOCK pipe as SPLICE_F_NONBLOCK; the kernel's
    // vmsplice does not (it would block the event loop on a "non-blocking" pipe that
    // is full). Make all three behave alike.
    unsigned effective = flags;
    int fl = fcntl(fd[0], F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) effective |= SPLICE_F_NONBLOCK;
    return OrErrno(vmsplice(fd[0], iov.data(), iov.size(), effective));
  };
}

using CallReader = SyscallFn (*)(const Napi::CallbackInfo&, std::vector<int>&);

template <CallReader Read>
Napi::Value Sync(const Napi::CallbackInfo& info, const char* name) {
  std::vector<int> fds;
  SyscallFn call = Read(info, fds);
  return RunNow(info.Env(), name, fds, call);
}

template <CallReader Read>
Napi::Value Async(const Napi::CallbackInfo& info, const char* name) {
  std::vector<int> fds;
  SyscallFn call = Read(info, fds);
  return RunOffThread(info.Env(), name, fds, std::move(call));
}

Napi::Value Splice(const Napi::CallbackInfo& info) { return Sync<SpliceCall>(info, "splice"); }
Napi::Value SpliceAsync(const Napi::CallbackInfo& info) { return Async<SpliceCall>(info, "splice"); }
Napi::Value Tee(const Napi::CallbackInfo& info) { return Sync<TeeCall>(info, "tee"); }
Napi::Value TeeAsync(const Napi::CallbackInfo& info) { return Async<TeeCall>(info, "tee"); }
Napi::Value Sendfile(const Napi::CallbackInfo& info) { return Sync<SendfileCall>(info, "sendfile"); }
Napi::Value SendfileAsync(const Napi::CallbackInfo& info) { return Async<SendfileCall>(info, "sendfile"); }

Napi::Value Vmsplice(const Napi::CallbackInfo& info) { return Sync<VmspliceCall>(info, "vmsplice"); }

}  // namespace

void ExportSplice(Napi::Env env, Napi::Object exports) {
  exports.Set("splice", Napi::Function::New(env, Splice, "splice"));
  exports.Set("spliceAsync", Napi::Function::New(env, SpliceAsync, "spliceAsync"));
  exports.Set("tee", Napi::Function::New(env, Tee, "tee"));
  exports.Set("teeAsync", Napi::Function::New(env, TeeAsync, "teeAsync"));
  exports.Set("vmsplice", Napi::Function::New(env, Vmsplice, "vmsplice"));
  exports.Set("sendfile", Napi::Function::New(env, Sendfile, "sendfile"));
  exports.Set("sendfileAsync", Napi::Function::New(env, SendfileAsync, "sendfileAsync"));
}

}  // namespace zc
