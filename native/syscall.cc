#include "syscall.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "private-fds.h"

namespace zc {

namespace {

ssize_t RetryEintr(const SyscallFn& call, const std::vector<int>& fds) {
  ssize_t r;
  do {
    r = call(fds);
  } while (r == -EINTR);
  return r;
}

class SyscallWorker final : public Napi::AsyncWorker {
 public:
  SyscallWorker(Napi::Env env, const char* syscall, SyscallFn call, std::vector<int> fds)
      : Napi::AsyncWorker(env, syscall),
        deferred_(Napi::Promise::Deferred::New(env)),
        syscall_(syscall),
        call_(std::move(call)),
        fds_(std::move(fds)) {}

  ~SyscallWorker() override { CloseFds(); }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { result_ = RetryEintr(call_, fds_); }

  void OnOK() override {
    CloseFds();
    Napi::Env env = Env();
    if (result_ < 0) {
      deferred_.Reject(SystemError(env, static_cast<int>(-result_), syscall_).Value());
    } else {
      deferred_.Resolve(Napi::Number::New(env, static_cast<double>(result_)));
    }
  }

 private:
  void CloseFds() {
    for (int fd : fds_) {
      if (fd >= 0) ClosePrivateFd(fd);
    }
    fds_.clear();
  }

  Napi::Promise::Deferred deferred_;
  const char* syscall_;
  SyscallFn call_;
  std::vector<int> fds_;
  ssize_t result_ = 0;
};

}  // namespace

ssize_t SendMsg(int fd, const msghdr& msg, int flags) {
  ssize_t r;
  do {
    r = OrErrno(sendmsg(fd, &msg, flags));
  } while (r == -EINTR);
  return r;
}

int SendMmsg(int fd, mmsghdr* msgs, unsigned count, int flags) {
  int r;
  do {
    r = sendmmsg(fd, msgs, count, flags);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

Napi::Value RunNow(Napi::Env env, const char* syscall, const std::vector<int>& fds, const SyscallFn& call) {
  ssize_t r = RetryEintr(call, fds);
  if (r < 0) throw SystemError(env, static_cast<int>(-r), syscall);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value RunOffThread(Napi::Env env, const char* syscall, const std::vector<int>& fds, SyscallFn call) {
  std::vector<int> dups;
  dups.reserve(fds.size());
  for (int fd : fds) {
    int dup = DupPrivateFd(fd);
    if (dup < 0) {
      int err = errno;
      for (int d : dups) ClosePrivateFd(d);
      // The caller's fd was bad (EBADF) or we are out of fds (EMFILE): reject the
      // Promise as the syscall itself would have failed.
      Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
      deferred.Reject(SystemError(env, err, syscall).Value());
      return deferred.Promise();
    }
    dups.push_back(dup);
  }
  SyscallWorker* worker;
  try {
    worker = new SyscallWorker(env, syscall, std::move(call), dups);
  } catch (...) {
    // No worker owns the duplicates (e.g. a terminating worker_thread refused the
    // Promise): close them here.
    for (int d : dups) ClosePrivateFd(d);
    throw;
  }
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace zc
