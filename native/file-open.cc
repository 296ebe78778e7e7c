// Opening a file to send on the JS thread, when the kernel can open it without
// blocking; otherwise JS opens it on the thread pool as before (lib/file-source.ts).
//
// Why: every trip to the thread pool costs two context switches and a futex wake, and
// sendFileZeroCopy of a small cached file made three (open, fstat, close). Measured
// here on one core, a 4 KiB file to a loopback reader: 190-260 us per call, against
// 90 us for the C loop; a saturated pool (DNS, zlib, crypto) also stalled every send.
//
// When is an open on the JS thread safe? Only when no step can wait for a disk, a
// server, a daemon or another process:
//  - the path walk: openat2(RESOLVE_CACHED) (Linux 5.12) fails with EAGAIN unless
//    every component is in the dentry cache and valid without I/O (the walk must
//    complete in RCU mode, where NFS, FUSE and friends refuse to revalidate); O_PATH,
//    so no filesystem open method runs yet.
//  - which filesystem: only a local one may open or stat on this thread (NFSv4's open
//    is an RPC, FUSE's a request to a daemon that may be this very process, 9p's and
//    CIFS's stat go to the server). The mount is named by its unique id, asked with
//    name_to_handle_at(AT_HANDLE_MNT_ID_UNIQUE) (Linux 6.12; it calls no getattr, and
//    a filesystem that cannot make handles says so), and its superblock's magic comes
//    from statmount(STATMOUNT_SB_BASIC) (Linux 6.8), which reads only the mount table.
//    Overlayfs is not on the list: its open and stat go through to the layer below,
//    which may be anything. Older kernels: nothing is opened here.
//  - the file's own open: through /proc/self/fd/N (the same inode, whatever happened
//    to the path since, checked again by device and inode), with O_NONBLOCK, so that a
//    lease another process holds (Samba, nfsd) fails it with EWOULDBLOCK instead of
//    waiting up to lease-break-time.
// Only regular files of non-zero size qualify: a FIFO would block its opener, a device
// may act on open, and a /proc file's size reads 0 (those go the thread-pool way).
// One wait no flag avoids: a fanotify permission listener (FAN_OPEN_PERM, some
// antivirus) holds every open until it answers, Node's own synchronous ones too; where
// one runs, ZEROCOPY_FILE_OPEN=pool sends every open to the thread pool (file-source.ts).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
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
constexpr long kSysStatmount = 457;            // the same number on x86_64 and arm64
constexpr int kAtHandleMntIdUnique = 0x001;    // name_to_handle_at: the 64-bit unique id
constexpr uint64_t kStatmountSbBasic = 0x1;    // sb_dev_*, sb_magic, sb_flags

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
constexpr uint32_t kStatxType = 0x1, kStatxIno = 0x100, kStatxSize = 0x200;

// linux/mount.h's struct mnt_id_req and the head of struct statmount (Linux 6.8).
struct MntIdReq {
  uint32_t size, spare;
  uint64_t mntId, param;
};
struct StatmountHead {
  uint32_t size, mntOpts;
  uint64_t mask;
  uint32_t sbDevMajor, sbDevMinor;
  uint64_t sbMagic;
  uint32_t sbFlags, fsType;
  uint64_t rest[64];  // room for the fields after these, which we do not ask for
};

// Whether each mount seen is a local filesystem, by its unique id. Process-wide: mounts
// are, and every environment (worker) may ask. Never destroyed (a worker may still ask
// while the process exits). Bounded: a process that sends from more mounts than this
// forgets them all and asks again.
struct MountTable {
  std::mutex mu;
  std::unordered_map<uint64_t, bool> local;
};
MountTable& Mounts() {
  static MountTable* table = new MountTable();
  return *table;
}
constexpr size_t kMaxMounts = 4096;

// Filesystems whose open and stat never leave this machine (linux/magic.h values).
bool LocalFilesystem(int64_t type) {
  switch (static_cast<uint32_t>(type)) {
    case 0xEF53:      // ext2, ext3, ext4
    case 0x58465342:  // xfs
    case 0x9123683E:  // btrfs
    case 0x01021994:  // tmpfs
    case 0x858458F6:  // ramfs
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

// statx of the fd itself, from cached attributes (call only on a local mount).
bool StatCached(int fd, StatxAbi& st) {
  const unsigned want = kStatxType | kStatxIno | kStatxSize;
  return syscall(SYS_statx, fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, want, &st) == 0 && (st.mask & want) == want;
}

// Whether `fd` (any fd on the file, O_PATH ones too) lies on a local filesystem (see
// the top of this file). Neither call reaches the filesystem's own code beyond making
// a file handle, which a local one does from memory.
bool OnLocalMount(int fd) {
  struct {
    unsigned int handleBytes;
    int handleType;
    unsigned char handle[128];  // MAX_HANDLE_SZ
  } fh{};
  fh.handleBytes = sizeof fh.handle;
  uint64_t mntId = 0;
  if (syscall(SYS_name_to_handle_at, fd, "", &fh, &mntId, AT_EMPTY_PATH | kAtHandleMntIdUnique) != 0) return false;
  MountTable& t = Mounts();
  {
    std::lock_guard<std::mutex> lock(t.mu);
    auto it = t.local.find(mntId);
    if (it != t.local.end()) return it->second;
  }
  MntIdReq req{};
  req.size = sizeof req;
  req.mntId = mntId;
  req.param = kStatmountSbBasic;
  StatmountHead sm{};
  if (syscall(kSysStatmount, &req, &sm, sizeof sm, 0) != 0 || !(sm.mask & kStatmountSbBasic)) return false;
  const bool local = LocalFilesystem(static_cast<int64_t>(sm.sbMagic));
  std::lock_guard<std::mutex> lock(t.mu);
  if (t.local.size() >= kMaxMounts) t.local.clear();
  t.local[mntId] = local;
  return local;
}

// Closes an fd when the scope ends, also when an exception leaves it.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) close(fd);
  }
};

bool RegularWithBytes(const StatxAbi& st) { return (st.mode & S_IFMT) == S_IFREG && st.size > 0; }

// openCached(path) -> a private read-only fd of the file, opened here without blocking
// (see the top of this file), or -errno: EAGAIN when it would have to wait (or is not
// a non-empty regular file on a local mount), or the path walk's own error. On any
// negative result JS opens the path on the thread pool, which reports errors in Node's
// own words.
Napi::Value OpenCached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be of type string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) return Napi::Number::New(env, -EINVAL);
  OpenHow how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = kResolveCached;
  FdGuard pathFd{static_cast<int>(syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how))};
  if (pathFd.fd < 0) return Napi::Number::New(env, -errno);
  StatxAbi st;
  if (!OnLocalMount(pathFd.fd) || !StatCached(pathFd.fd, st) || !RegularWithBytes(st)) return Napi::Number::New(env, -EAGAIN);
  char self[40];
  std::snprintf(self, sizeof self, "/proc/self/fd/%d", pathFd.fd);
  FdGuard file{open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)};
  if (file.fd < 0) return Napi::Number::New(env, -errno);
  StatxAbi again;
  if (!StatCached(file.fd, again) || again.ino != st.ino || again.devMajor != st.devMajor || again.devMinor != st.devMinor) {
    return Napi::Number::New(env, -EAGAIN);  // not the file the walk found (no procfs at /proc?)
  }
  const int kept = KeepPrivateFd(file.fd);
  file.fd = -1;  // KeepPrivateFd took it (or closed it on failure)
  return Napi::Number::New(env, kept < 0 ? -errno : kept);
}

// localRegularFile(fd) -> true when `fd` is a non-empty regular file on a mount known
// to be local: its fstat cannot wait for a server, so it may run on the JS thread.
Napi::Value LocalRegularFile(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info, 0, "fd");
  StatxAbi st;
  return Napi::Boolean::New(info.Env(), OnLocalMount(fd) && StatCached(fd, st) && RegularWithBytes(st));
}

}  // namespace

void ExportFileOpen(Napi::Env env, Napi::Object exports) {
  exports.Set("openCached", Napi::Function::New(env, OpenCached, "openCached"));
  exports.Set("localRegularFile", Napi::Function::New(env, LocalRegularFile, "localRegularFile"));
}

}  // namespace zc
