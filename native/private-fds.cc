// The registry of private fds (see private-fds.h for why it exists).
#include "private-fds.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <unordered_set>

namespace zc {

namespace {

struct Registry {
  std::mutex mu;
  std::unordered_set<int> fds;
  int floor = -1;
};

// Never destroyed: relay threads and late finalizers may close fds during exit, after
// static destructors would have run.
Registry& TheRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

// The lowest number a private fd takes. Computed once, under the registry's lock.
int Floor(Registry& r) {
  if (r.floor < 0) {
    rlimit lim{};
    rlim_t cap = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? lim.rlim_cur : 1024;
    r.floor = static_cast<int>(cap == RLIM_INFINITY || cap >= 2048 ? 1024 : cap / 2);
  }
  return r.floor;
}

// A duplicate at or above the floor; where the fd limit leaves no room there (EMFILE
// or EINVAL), the lowest free number, which the registry still protects.
int DupHigh(Registry& r, int fd) {
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, Floor(r));
  if (dup < 0 && (errno == EMFILE || errno == EINVAL)) dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return dup;
}

}  // namespace

namespace {

// A private duplicate of `fd`, which must be one of ours (`ours`) or must not be.
int DupRegistered(int fd, bool ours) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  if ((r.fds.count(fd) != 0) != ours) {
    errno = EBADF;
    return -1;
  }
  int dup = DupHigh(r, fd);
  if (dup >= 0) r.fds.insert(dup);
  return dup;
}

}  // namespace

int DupPrivateFd(int fd) { return DupRegistered(fd, false); }

int DupOwnFd(int fd) { return DupRegistered(fd, true); }

int DupCallerFd(int fd) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.fds.count(fd) != 0) {
    errno = EBADF;
    return -1;
  }
  return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

int KeepPrivateFd(int fd) {
  if (fd < 0) return fd;
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  int kept = fd;
  if (fd < Floor(r)) {
    kept = DupHigh(r, fd);
    int err = errno;
    close(fd);
    if (kept < 0) {
      errno = err;
      return -1;
    }
  }
  r.fds.insert(kept);
  return kept;
}

int ClosePrivateFd(int fd) {
  Registry& r = TheRegistry();
  // Unregister and close under the lock: until close returns the number is still ours,
  // so no other thread can be handed it while the registry says otherwise.
  std::lock_guard<std::mutex> lock(r.mu);
  r.fds.erase(fd);
  return close(fd);
}

std::vector<int> PrivateFds() {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<int> out(r.fds.begin(), r.fds.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace zc
