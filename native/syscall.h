// Running one syscall, on the JS thread or off it.
//
// Sync calls return the byte count or throw a SystemError. Async calls run on libuv's
// thread pool and settle a Promise back on the JS thread. An async call never uses the
// caller's fd numbers off-thread: it works on private duplicates (F_DUPFD_CLOEXEC), so
// a caller that closes an fd while the call runs cannot make it hit whatever file
// reuses that number. The duplicates share the open file description, so O_NONBLOCK
// and the file position ("offset null") behave exactly as on the caller's fd.
#pragma once

#include <napi.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <functional>
#include <vector>

namespace zc {

// -errno for a failed syscall, its result otherwise.
inline ssize_t OrErrno(ssize_t r) { return r < 0 ? -errno : r; }

// sendmsg(2), retrying EINTR: bytes sent, or -errno. Every send path goes through here.
ssize_t SendMsg(int fd, const msghdr& msg, int flags);

// sendmmsg(2), retrying EINTR: messages sent, or -errno.
int SendMmsg(int fd, mmsghdr* msgs, unsigned count, int flags);

// The result of one syscall: bytes >= 0, or -errno.
using SyscallFn = std::function<ssize_t(const std::vector<int>& fds)>;

// Runs `call` on `fds` now, retrying EINTR; returns a Number or throws a SystemError.
Napi::Value RunNow(Napi::Env env, const char* syscall, const std::vector<int>& fds, const SyscallFn& call);

// Runs `call` on duplicates of `fds` on the thread pool, retrying EINTR; returns a
// Promise of the byte count. `call` must not touch JS-owned memory: JS may free or
// detach it while the call runs.
Napi::Value RunOffThread(Napi::Env env, const char* syscall, const std::vector<int>& fds, SyscallFn call);

}  // namespace zc
