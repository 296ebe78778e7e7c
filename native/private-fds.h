// The fds the package makes for itself: private duplicates of the sockets and files it
// sends on or relays (so that Node closing its fd cannot redirect a send), the rings,
// eventfds and epoll instances of its engines, the relay's pipes.
//
// Why they need care: fd numbers are process-wide and the kernel hands out the lowest
// free one. A caller who closes fd N and then passes N to us (a stale number, a bug
// we must report, not follow) would otherwise find N already reused by a duplicate we
// made a moment earlier in the same call, and we would read or send on our own fd
// instead of failing with EBADF. So:
//  - every private fd lives at or above a floor (1024, or half the fd limit if that is
//    lower), out of the range a Node process's own fds normally occupy;
//  - every private fd is registered while it is open, and a duplicate of a caller's
//    fd refuses a number in the registry with EBADF, whatever its value.
// The registry is process-wide (fds are) and guarded by a mutex: workers and the relay
// threads open and close private fds concurrently.
#pragma once

#include <vector>

namespace zc {

// A close-on-exec duplicate of the caller's `fd`, registered as private. Returns -1
// with errno set: EBADF also when `fd` is one of our private fds.
int DupPrivateFd(int fd);

// A private duplicate of one of our own private fds (an open file lent from one send
// to another). EBADF when `fd` is not one of ours.
int DupOwnFd(int fd);

// A close-on-exec duplicate of the caller's `fd` for the caller to own (raw.dup): the
// lowest free number, as dup(2) gives, not registered. EBADF when `fd` is one of ours.
int DupCallerFd(int fd);

// Registers an fd we just made (eventfd, epoll, pipe, ring), first moving it above the
// floor (the original number is closed). Returns the number to use from now on; on
// failure (-1, errno) the original fd is closed.
int KeepPrivateFd(int fd);

// Unregisters and closes a private fd (any fd: an unregistered one is just closed).
// Returns close(2)'s result.
int ClosePrivateFd(int fd);

// Every registered private fd, ascending (for tests: each must be open).
std::vector<int> PrivateFds();

}  // namespace zc
