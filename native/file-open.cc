// Opening a file to send on the JS thread, when the kernel can open it without
// blocking; otherwise JS opens it on the thread pool as before (lib/file-source.ts).
//
// Why: every trip to the thread pool costs two context switches and a futex wake, and
// sendFileZeroCopy of a small cached file made three (open, fstat, close). Measured
// here on one core, a 4 KiB file to a loopback reader: 190-260 us per call, against
// 90 us for the C loop; a saturated pool (DNS, zlib, crypto) also stalled every send.
//
// When is an open on the JS thread safe? Only when no step can wait for a disk, a
// server or a daemon:
//  - the path walk: openat2(RESOLVE_CACHED) (Linux 5.12) fails with EAGAIN unless
//    every component is in the dentry cache and valid without I/O (the walk must
//    complete in RCU mode, where NFS, FUSE and friends refuse to revalidate);
//  - the open itself: O_PATH first, which calls no filesystem open method. Then the
//    file's own open through /proc/self/fd/N (the same inode, whatever happened to the
//    path since), but only on a filesystem known to be local: NFSv4's open is an RPC
//    and FUSE's a request to a daemon that may be this very process. Which filesystem a
//    mount is comes from fstatfs, which is just as remote there, so it is asked once
//    per mount on the thread pool, and the answer is kept by the mount's unique id
//    (statx STATX_MNT_ID_UNIQUE, Linux 6.8: never reused, unlike the plain mount id or
//    an anonymous st_dev). Without that id (older kernels) nothing is opened here.
//  - the size: statx with AT_STATX_DONT_SYNC (no revalidation with a server).
// Only regular files of non-zero size qualify: a FIFO would block its opener, a device
// may act on open, and a /proc file's size reads 0 (those go the thread-pool way).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "private-fds.h"

namespace zc {

namespace {

#ifndef SYS_openat2
#define SYS_openat2 437  // the same number on x86_64 and arm64
#endif
#ifndef AT_STATX_DONT_SYNC
#define AT_STATX_DONT_SYNC 0x4000
#endif

// linux/openat2.h, spelled out: glibc 2.28 systems may have older kernel headers.
struct OpenHow {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};
constexpr uint64_t kResolveCached = 0x20;

// struct statx as the kernel lays it out (glibc 2.28's has no stx_mnt_id yet).
struct StatxAbi {
  uint32_t mask, blksize;
  uint64_t attributes;
  uint32_t nlink, uid, gid;
  uint16_t mode, pad1;
  uint64_t ino, size, blocks, attributesMask;
  struct {
    int64_t sec;
    uint32_t nsec;
    int32_t pad;
  } atime, btime, ctime, mtime;
  uint32_t rdevMajor, rdevMinor, devMajor, devMinor;
  uint64_t mntId;
  uint64_t spare[13];
};
static_assert(offsetof(StatxAbi, mntId) == 144, "struct statx layout");
static_assert(sizeof(StatxAbi) == 256, "struct statx size");
constexpr uint32_t kStatxType = 0x1, kStatxSize = 0x200, kStatxMntIdUnique = 0x4000;

// What we know of a mount, by its unique id. Process-wide: mounts are, and every
// environment (worker) may ask. Bounded: a process that sends from more mounts than
// this forgets them all and asks again.
enum class Mount : uint8_t { kAsking, kLocal, kRemote };
std::mutex mountsMutex;
std::unordered_map<uint64_t, Mount> mounts;
constexpr size_t kMaxMounts = 4096;

// Filesystems whose open and stat never leave this machine (linux/magic.h values).
bool LocalFilesystem(int64_t type) {
  switch (static_cast<uint32_t>(type)) {
    case 0xEF53:      // ext2, ext3, ext4
    case 0x58465342:  // xfs
    case 0x9123683E:  // btrfs
    case 0x01021994:  // tmpfs
    case 0x858458F6:  // ramfs
    case 0x794C7630:  // overlayfs (containers' image layers)
    case 0xF2F52010:  // f2fs
    case 0x2FC12FC1:  // zfs
    case 0xCA451A4E:  // bcachefs
    case 0xE0F5E1E2:  // erofs
    case 0x73717368:  // squashfs
      return true;
    default:
      return false;
  }
}

// Learns on the thread pool what filesystem a mount is, from an fd on it (ours, closed
// when done). Nothing is reported to JS: the next open on that mount finds the answer.
class MountProbe final : public Napi::AsyncWorker {
 public:
  MountProbe(Napi::Env env, int fd, uint64_t mntId) : Napi::AsyncWorker(env, "zerocopy.mountProbe"), fd_(fd), mntId_(mntId) {}
  ~MountProbe() override { ClosePrivateFd(fd_); }
  void Execute() override {
    struct statfs sf;
    int r;
    do {
      r = fstatfs(fd_, &sf);
    } while (r != 0 && errno == EINTR);
    const Mount m = r == 0 && LocalFilesystem(sf.f_type) ? Mount::kLocal : Mount::kRemote;
    std::lock_guard<std::mutex> lock(mountsMutex);
    mounts[mntId_] = m;
  }
  void OnOK() override {}
  void OnError(const Napi::Error&) override {}

 private:
  int fd_;
  uint64_t mntId_;
};

// statx of the fd itself, from cached attributes.
bool StatCached(int fd, StatxAbi& st) {
  const unsigned want = kStatxType | kStatxSize | kStatxMntIdUnique;
  return syscall(SYS_statx, fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, want, &st) == 0 && (st.mask & want) == want;
}

// Whether `fd` (any fd on the file) lies on a mount known to be local. The first time a
// mount is seen, a duplicate of `fd` goes to the thread pool to find out, and the
// answer is no for now.
bool OnLocalMount(Napi::Env env, int fd, const StatxAbi& st) {
  {
    std::lock_guard<std::mutex> lock(mountsMutex);
    auto it = mounts.find(st.mntId);
    if (it != mounts.end()) return it->second == Mount::kLocal;
    if (mounts.size() >= kMaxMounts) mounts.clear();
    mounts[st.mntId] = Mount::kAsking;
  }
  // Not DupPrivateFd: `fd` may be one of our private fds, which that refuses.
  const int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  const int probeFd = dup < 0 ? -1 : KeepPrivateFd(dup);
  if (probeFd < 0) {
    std::lock_guard<std::mutex> lock(mountsMutex);
    mounts.erase(st.mntId);
    return false;
  }
  (new MountProbe(env, probeFd, st.mntId))->Queue();
  return false;
}

bool RegularWithBytes(const StatxAbi& st) { return (st.mode & S_IFMT) == S_IFREG && st.size > 0; }

// openCached(path) -> a private read-only fd of the file, opened here without blocking
// (see the top of this file), or -errno: EAGAIN when it would have to wait (or is not
// a non-empty regular file on a known local mount), or the path walk's own error. On
// any negative result JS opens the path on the thread pool, which reports errors in
// Node's own words.
Napi::Value OpenCached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be of type string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) return Napi::Number::New(env, -EINVAL);
  OpenHow how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = kResolveCached;
  const int pathFd = static_cast<int>(syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how));
  if (pathFd < 0) return Napi::Number::New(env, -errno);
  int fd = -EAGAIN;
  StatxAbi st;
  if (StatCached(pathFd, st) && RegularWithBytes(st) && OnLocalMount(env, pathFd, st)) {
    char self[40];
    std::snprintf(self, sizeof self, "/proc/self/fd/%d", pathFd);
    const int opened = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    const int kept = opened < 0 ? -1 : KeepPrivateFd(opened);
    fd = kept < 0 ? -errno : kept;
  }
  close(pathFd);
  return Napi::Number::New(env, fd);
}

// localRegularFile(fd) -> true when `fd` is a non-empty regular file on a mount known
// to be local: its fstat cannot wait for a server, so it may run on the JS thread.
Napi::Value LocalRegularFile(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info, 0, "fd");
  StatxAbi st;
  return Napi::Boolean::New(info.Env(), StatCached(fd, st) && RegularWithBytes(st) && OnLocalMount(info.Env(), fd, st));
}

}  // namespace

void ExportFileOpen(Napi::Env env, Napi::Object exports) {
  exports.Set("openCached", Napi::Function::New(env, OpenCached, "openCached"));
  exports.Set("localRegularFile", Napi::Function::New(env, LocalRegularFile, "localRegularFile"));
}

}  // namespace zc
