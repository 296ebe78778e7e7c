// Pipes and queue sizes: creating pipes, their capacity, and how many bytes sit in a
// pipe's or socket's queues (the kernel-visible state tests and callers assert on).
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace zc {

namespace {

// pipe({ nonBlocking = false, closeOnExec = true }) -> { readFd, writeFd }
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool nonBlocking = false;
  bool closeOnExec = true;
  Napi::Value opts = info[0];
  if (!opts.IsUndefined()) {
    if (!opts.IsObject() || opts.IsArray()) {
      ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"options\" argument must be of type object");
    }
    nonBlocking = BoolOption(opts.As<Napi::Object>(), "nonBlocking", nonBlocking);
    closeOnExec = BoolOption(opts.As<Napi::Object>(), "closeOnExec", closeOnExec);
  }
  int fds[2];
  int flags = (nonBlocking ? O_NONBLOCK : 0) | (closeOnExec ? O_CLOEXEC : 0);
  if (pipe2(fds, flags) != 0) throw SystemError(env, errno, "pipe2");
  Napi::Object result = Napi::Object::New(env);
  result.Set("readFd", Napi::Number::New(env, fds[0]));
  result.Set("writeFd", Napi::Number::New(env, fds[1]));
  return result;
}

Napi::Value IntResult(Napi::Env env, int r, const char* syscall) {
  if (r < 0) throw SystemError(env, errno, syscall);
  return Napi::Number::New(env, r);
}

Napi::Value GetPipeSize(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  return IntResult(info.Env(), fcntl(fd, F_GETPIPE_SZ), "fcntl");
}

// The kernel rounds the size up to a power-of-two number of pages and returns it;
// sizes above /proc/sys/fs/pipe-max-size need CAP_SYS_RESOURCE (EPERM otherwise).
Napi::Value SetPipeSize(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  uint64_t size = LengthArg(info, 1, "size");
  if (size > INT32_MAX) {
    ThrowRangeError(info.Env(), "ERR_OUT_OF_RANGE",
                    "The value of \"size\" is out of range. It must be an integer >= 0 && <= 2147483647. Received " +
                        std::to_string(size));
  }
  return IntResult(info.Env(), fcntl(fd, F_SETPIPE_SZ, static_cast<int>(size)), "fcntl");
}

// FIONREAD: bytes waiting to be read (pipe contents, socket receive queue).
Napi::Value InputQueueBytes(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int n = 0;
  if (ioctl(fd, FIONREAD, &n) != 0) throw SystemError(info.Env(), errno, "ioctl");
  return Napi::Number::New(info.Env(), n);
}

// SIOCOUTQ: bytes in a socket's send queue (for TCP: sent but not yet acknowledged,
// plus not yet sent).
Napi::Value OutputQueueBytes(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int n = 0;
  if (ioctl(fd, SIOCOUTQ, &n) != 0) throw SystemError(info.Env(), errno, "ioctl");
  return Napi::Number::New(info.Env(), n);
}

}  // namespace

void ExportPipes(Napi::Env env, Napi::Object exports) {
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("getPipeSize", Napi::Function::New(env, GetPipeSize, "getPipeSize"));
  exports.Set("setPipeSize", Napi::Function::New(env, SetPipeSize, "setPipeSize"));
  exports.Set("inputQueueBytes", Napi::Function::New(env, InputQueueBytes, "inputQueueBytes"));
  exports.Set("outputQueueBytes", Napi::Function::New(env, OutputQueueBytes, "outputQueueBytes"));
}

}  // namespace zc
