// RelayEngine: the JS face of the relay thread (relay_loop.h). JS calls start() with
// fds it took from Node (or was given), the thread moves the bytes, and each job's end
// comes back through one thread-safe function: onDone(id, errno, syscall, movedAB,
// movedBA, premature, failedEnd).
//
// Every argument is checked here, on the JS thread, before a job exists: fd kinds
// (stream sockets; a regular file opened for writing, not O_APPEND), offsets, lengths,
// the buffer size. The job works on private duplicates (F_DUPFD_CLOEXEC) that it closes
// itself, so Node closing or reusing its fd numbers never redirects a relay.
//
// Threads: socket relays share the environment's relay loop; each upload (a socket into
// a file) runs on a loop of its own, made at start() and joined when its end is reported:
// a file write may block without bound, and nothing else may wait behind it. One thread
// per running upload, not a bounded pool: a pool would let a few blocked disks stall
// every later upload, which is the very failure this avoids. cancel() of an upload
// abandons it at once (relay_loop.h): the source socket is closed out of the thread's
// hands and the bytes written so far are returned, for JS to settle without waiting.
//
// Lifetime: the threads belong to this environment. Its cleanup hook (added after the
// thread-safe function, so it runs before Node's own hook for that function) stops the
// loops and joins their threads, closing every job's fds, and only then releases the
// function: no call into it can come after Node frees it (a loop makes no report once
// asked to stop). A terminated worker with relays running leaves nothing behind, with
// one exception: an upload thread still blocked in a file write after kStopWaitMs is
// left to end on its own (it then closes its fds and frees its loop); the worker's
// termination does not wait for a frozen disk.
#include "glibc-floor.h"  // first: binds the calls below to glibc 2.28's versions
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "relay_loop.h"
#include "private-fds.h"

namespace zc {

namespace {

constexpr uint32_t kMinBuffer = 4096;
constexpr uint32_t kMaxBuffer = 64u << 20;
constexpr int64_t kStopWaitMs = 500;

// Whether a socket's traffic is delivered locally (AF_UNIX, loopback addresses): there
// the kernel copies on delivery anyway, and a copy loop measured faster than splice
// between two such sockets.
bool IsLocalDelivery(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family == AF_UNIX) return true;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
  }
  return false;
}

// A stream socket, switched to non-blocking (as libuv has Node's) so the thread never
// blocks on it.
// statx (glibc 2.28), not fstat: newer glibc headers bind fstat to fstat64@GLIBC_2.33.
mode_t FileType(Napi::Env env, int fd) {
  struct statx st{};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, &st) != 0) throw SystemError(env, errno, "statx");
  return st.stx_mode;
}

// Whether a socket without a peer never had one: a connection that was reset or closed
// (also not connected any more) is a relay's failure to report as such (ECONNRESET, an
// end), not a refusal; a TCP socket that never completed a handshake is refused.
bool NeverConnected(int fd) {
  if (errno != ENOTCONN) return false;
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return true;  // not TCP: AF_UNIX never connected
  // A handshake leaves the options it negotiated (SACK, timestamps, window scaling).
  return ti.tcpi_options == 0;
}

// A connected stream socket, switched to non-blocking (as libuv has Node's) so the
// thread never blocks on it. A listening socket or one not (or no longer) connected is
// refused here, before anything moves: its first read would fail only once the relay
// runs, and take the other end down with it. `name` is the argument the caller gave.
void CheckStreamSocket(Napi::Env env, int fd, const std::string& name) {
  mode_t mode = FileType(env, fd);
  int type = 0;
  socklen_t len = sizeof type;
  if (!S_ISSOCK(mode) || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    ThrowTypeError(env, "ERR_INVALID_FD_TYPE", "The \"" + name + "\" fd is not a stream socket");
  }
  int listening = 0;
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening != 0) {
    ThrowTypeError(env, "ERR_INVALID_FD_TYPE", "The \"" + name + "\" fd is a listening socket, not a connection");
  }
  sockaddr_storage peer{};
  len = sizeof peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 && NeverConnected(fd)) {
    Napi::Error err = Napi::Error::New(env, "The \"" + name + "\" socket is not connected");
    err.Set("code", "ERR_SOCKET_NOT_CONNECTED");
    throw err;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) throw SystemError(env, errno, "fcntl");
  if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw SystemError(env, errno, "fcntl");
}

// A regular file open for writing at explicit offsets.
void CheckWritableFile(Napi::Env env, int fd, const std::string& name) {
  if (!S_ISREG(FileType(env, fd))) {
    ThrowTypeError(env, "ERR_INVALID_FD_TYPE", "The \"" + name + "\" fd is not a regular file");
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) throw SystemError(env, errno, "fcntl");
  if ((flags & O_ACCMODE) == O_RDONLY) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE", "The \"" + name + "\" fd is open read-only: nothing can be written to it");
  }
  if (flags & O_APPEND) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                   "The \"" + name + "\" fd is open with O_APPEND: writes could not go at the offset");
  }
}

// A regular file of a pseudo-file system (procfs, sysfs and their kin): splice cannot
// write into it (no splice_write: EINVAL, after the relay thread had taken bytes off the
// socket) and many of its files take no positioned writes either (ESPIPE). An upload
// into one is refused up front, whatever the mechanism. Told by the file system's magic
// (fstatfs), not by trying a write: a trial splice waits while the file system is frozen,
// and this runs on the JS thread.
bool IsPseudoFile(int fd) {
  struct statfs fs{};
  if (fstatfs(fd, &fs) != 0) return false;  // the relay's own calls report what is wrong
  switch (static_cast<unsigned long>(fs.f_type)) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case BPF_FS_MAGIC:
      return true;
    default:
      return false;
  }
}

// An upload's target: a regular file open for writing, not O_APPEND, on a real file
// system. `name` is the caller's name for it.
void CheckUploadFile(Napi::Env env, int fd, const std::string& name) {
  CheckWritableFile(env, fd, name);
  if (IsPseudoFile(fd)) {
    Napi::Error err = Napi::Error::New(env, "The \"" + name +
                                                "\" argument is a pseudo-file (procfs, sysfs): receiveToFile writes to regular files only");
    err.Set("code", "ERR_ZEROCOPY_NOT_A_FILE");
    throw err;
  }
}

// checkUploadFile(fd, name): throws what start() would for this upload target; for the
// copy path of an HTTP request's body, which writes with fs and must refuse before it
// takes any of the body.
Napi::Value CheckUploadFileJs(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  if (!info[1].IsString()) ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "The \"name\" argument must be of type string");
  CheckUploadFile(info.Env(), fd, info[1].As<Napi::String>().Utf8Value());
  return info.Env().Undefined();
}

// Optional bytes (a view, or null/undefined), copied: the thread never reads JS memory.
std::vector<char> PrefixArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  std::vector<char> out;
  if (info[index].IsNull() || info[index].IsUndefined()) return out;
  if (info[index].IsArray()) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string("The \"") + name + "\" argument must be one view");
  }
  std::vector<iovec> views;
  ByteViewsArg(info, index, name, views);
  for (const iovec& v : views) out.insert(out.end(), static_cast<char*>(v.iov_base), static_cast<char*>(v.iov_base) + v.iov_len);
  return out;
}

// An end's name as the caller gave it (a string).
std::string NameArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsString()) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string("The \"") + name + "\" argument must be of type string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

int DupPrivate(Napi::Env env, int fd) {
  int dup = DupPrivateFd(fd);
  if (dup < 0) throw SystemError(env, errno, "fcntl");
  return dup;
}

// An upload thread left running past its environment runs this library's code: keep
// the library loaded for the life of the process from then on (Node up to 24
// dlclose()s an addon when the last environment using it ends).
void PinAddon() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&PinAddon), &info) != 0 && info.dli_fname != nullptr) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  }
}

void OnTeardown(void* arg);

class RelayEngine final : public Napi::ObjectWrap<RelayEngine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RelayEngine",
                       {
                           InstanceMethod<&RelayEngine::Start>("start"),
                           InstanceMethod<&RelayEngine::Cancel>("cancel"),
                           InstanceMethod<&RelayEngine::Ref>("ref"),
                           InstanceMethod<&RelayEngine::Unref>("unref"),
                           InstanceMethod<&RelayEngine::Moved>("moved"),
                           InstanceMethod<&RelayEngine::Progress>("progress"),
                           InstanceMethod<&RelayEngine::Held>("held"),
                       });
  }

  // new RelayEngine(onDone): unreferenced until ref().
  explicit RelayEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RelayEngine>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"onDone\" argument must be a function");
    napi_value name = Napi::String::New(env, "zerocopy.relay");
    napi_status status = napi_create_threadsafe_function(env, info[0], nullptr, name, 0, 1, nullptr, nullptr, this,
                                                         CallJs, &tsfn_);
    if (status != napi_ok) throw Napi::Error::New(env, "zerocopy: cannot create the relay's thread-safe function");
    napi_unref_threadsafe_function(env, tsfn_);
    napi_threadsafe_function tsfn = tsfn_;
    report_ = [tsfn](RelayDone* done) {
      if (napi_call_threadsafe_function(tsfn, done, napi_tsfn_nonblocking) != napi_ok) delete done;
    };
    loop_ = std::make_unique<RelayLoop>(report_, counters_);
    env_ = env;
    napi_add_env_cleanup_hook(env, OnTeardown, this);
  }

  ~RelayEngine() override {
    if (!tornDown_) {
      napi_remove_env_cleanup_hook(env_, OnTeardown, this);
      Teardown();
    }
  }

  void Teardown() {
    if (tornDown_) return;
    tornDown_ = true;
    // Every upload abandoned and asked first, so that their threads end side by side:
    // none reads its socket again, and one blocked in a write ends when it returns.
    for (auto& entry : uploads_) {
      entry.second->Abandon(entry.first, *shared_.at(entry.first));
      entry.second->RequestStop();
    }
    loop_->Stop(-1);  // socket relays never block: joined
    uint64_t deadline = uv_hrtime() + static_cast<uint64_t>(kStopWaitMs) * 1000000;
    for (auto& entry : uploads_) {
      uint64_t now = uv_hrtime();
      int64_t left = now >= deadline ? 0 : static_cast<int64_t>((deadline - now) / 1000000);
      // Still blocked in a write: the thread frees its loop when the write returns.
      if (!entry.second->Stop(left)) {
        PinAddon();
        entry.second.release();
      }
    }
    uploads_.clear();
    shared_.clear();
    // No loop reports from now on (each was asked to stop): the function may go.
    napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
  }

  // A job's end reached JS: its loop (an upload's) is joined, its progress forgotten.
  void Forget(uint32_t id) {
    shared_.erase(id);
    auto it = uploads_.find(id);
    if (it == uploads_.end()) return;
    std::unique_ptr<RelayLoop> loop = std::move(it->second);
    uploads_.erase(it);
    loop->Stop(-1);  // its only job ended: the thread is in epoll_wait, not in a write
  }

 private:
  // start(id, mechanism 0 auto | 1 copy | 2 splice, bufferSize, fdA, fdB, bIsFile,
  //       fileOffset, activeAB, lengthAB, shutdownAB, activeBA, lengthBA, shutdownBA,
  //       prefixAB, prefixBA, nameA, nameB) -> 'copy' | 'splice'
  // A length of null means until EOF. The prefixes are read last (args.h); nameA and
  // nameB are the caller's names for the two ends ('a', 'socket', 'file'), which every
  // message about an end uses.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (tornDown_) ThrowTypeError(env, "ERR_INVALID_STATE", "The relay engine is closed");
    uint32_t id = UintArg(info, 0, "id", UINT32_MAX);
    uint32_t mechanism = UintArg(info, 1, "mechanism", 2);
    uint32_t bufferSize = UintArg(info, 2, "bufferSize", kMaxBuffer);
    if (bufferSize < kMinBuffer) {
      ThrowRangeError(env, "ERR_OUT_OF_RANGE", "The value of \"bufferSize\" is out of range. It must be >= 4096 && <= 67108864");
    }
    int fdA = FdArg(info, 3, "fdA");
    int fdB = FdArg(info, 4, "fdB");
    bool bIsFile = BoolArg(info, 5, "bIsFile");
    std::optional<int64_t> fileOffset = OffsetArg(info, 6, "fileOffset");
    bool active[2] = {BoolArg(info, 7, "activeAB"), BoolArg(info, 10, "activeBA")};
    std::optional<uint64_t> length[2];
    for (int i = 0; i < 2; i++) {
      size_t index = i == 0 ? 8 : 11;
      if (!info[index].IsNull()) length[i] = LengthArg(info, index, i == 0 ? "lengthAB" : "lengthBA");
    }
    bool shut[2] = {BoolArg(info, 9, "shutdownAB"), BoolArg(info, 12, "shutdownBA")};
    if (!active[0] && !active[1]) ThrowTypeError(env, "ERR_INVALID_ARG_VALUE", "A relay needs at least one direction");
    if (bIsFile && (active[1] || !fileOffset.has_value())) {
      ThrowTypeError(env, "ERR_INVALID_ARG_VALUE", "A file is written at an offset and never read from");
    }
    std::string names[2] = {NameArg(info, 15, "nameA"), NameArg(info, 16, "nameB")};
    CheckStreamSocket(env, fdA, names[0]);
    if (bIsFile) {
      CheckUploadFile(env, fdB, names[1]);
    } else {
      CheckStreamSocket(env, fdB, names[1]);
    }
    std::vector<char> prefixes[2] = {PrefixArg(info, 13, "prefixAB"), PrefixArg(info, 14, "prefixBA")};

    // 'auto', as measured (bench/relay.bench.ts): between sockets delivered locally a
    // copy loop is faster than splice; into a file splice is (one copy into the page
    // cache instead of two); anywhere else splice saves both copies.
    RelayMechanism chosen = mechanism == 1 ? RelayMechanism::kCopy
                            : mechanism == 2 ? RelayMechanism::kSplice
                            : (!bIsFile && IsLocalDelivery(fdA) && IsLocalDelivery(fdB)) ? RelayMechanism::kCopy
                                                                                          : RelayMechanism::kSplice;
    if (shared_.count(id) != 0) ThrowTypeError(env, "ERR_INVALID_STATE", "A relay job with this id is running");
    auto job = std::make_unique<RelayJob>();
    job->id = id;
    job->counters = counters_;
    job->mechanism = chosen;
    job->bufferSize = bufferSize;
    job->fds[0] = DupPrivate(env, fdA);
    job->isSocket[0] = true;
    try {
      job->fds[1] = DupPrivate(env, fdB);
    } catch (...) {
      FreeRelayJob(job.release());
      throw;
    }
    job->isSocket[1] = !bIsFile;
    job->shared->source = job->fds[0];
    for (int i = 0; i < 2; i++) {
      RelayDirection& d = job->dirs[i];
      d.active = active[i];
      if (!d.active) continue;
      d.inEnd = i;
      d.outEnd = 1 - i;
      d.in = job->fds[i];
      d.out = job->fds[1 - i];
      d.outIsFile = bIsFile;
      d.fileOffset = bIsFile ? *fileOffset : 0;
      d.exact = length[i].has_value();
      d.toRead = d.exact ? *length[i] : 0;
      if (d.exact && prefixes[i].size() > d.toRead) {
        RelayJob* raw = job.release();
        FreeRelayJob(raw);
        ThrowRangeError(env, "ERR_OUT_OF_RANGE", "The buffered bytes exceed the relay's length");
      }
      if (d.exact) d.toRead -= prefixes[i].size();
      d.shutdownOnEof = shut[i] && !bIsFile;
      d.prefix = std::move(prefixes[i]);
    }
    std::shared_ptr<JobShared> shared = job->shared;
    std::unique_ptr<RelayLoop> own = bIsFile ? std::make_unique<RelayLoop>(report_, counters_) : nullptr;
    RelayJob* raw = job.release();
    int err = (own ? own.get() : loop_.get())->Submit(raw);
    if (err != 0) {
      FreeRelayJob(raw);
      throw SystemError(env, err, "uv_thread_create");
    }
    shared_[id] = std::move(shared);
    if (own) uploads_[id] = std::move(own);
    return Napi::String::New(env, chosen == RelayMechanism::kCopy ? "copy" : "splice");
  }

  // cancel(id) -> undefined | bytes: the job ends soon after, reported with ECANCELED.
  // An upload is abandoned at once instead: the bytes it had written come back, its
  // thread never reads the socket again, and its later report is to be ignored.
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = UintArg(info, 0, "id", UINT32_MAX);
    if (tornDown_) return env.Undefined();
    auto upload = uploads_.find(id);
    if (upload == uploads_.end()) {
      loop_->Cancel(id);
      return env.Undefined();
    }
    int64_t moved = upload->second->Abandon(id, *shared_.at(id));
    if (moved < 0) return env.Undefined();  // it had ended: its report is on the way
    return Napi::Number::New(env, static_cast<double>(moved));
  }

  // progress(id): bytes the job wrote so far, -1 for a job not running.
  Napi::Value Progress(const Napi::CallbackInfo& info) {
    uint32_t id = UintArg(info, 0, "id", UINT32_MAX);
    auto it = shared_.find(id);
    double moved = it == shared_.end() ? -1 : static_cast<double>(it->second->moved.load(std::memory_order_relaxed));
    return Napi::Number::New(info.Env(), moved);
  }

  // held(): bytes of buffers and pipe capacity every job holds right now.
  Napi::Value Held(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(counters_->held.load(std::memory_order_relaxed)));
  }

  // ref()/unref(): keep the process alive while relays run, as sockets would.
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (!tornDown_) napi_ref_threadsafe_function(info.Env(), tsfn_);
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (!tornDown_) napi_unref_threadsafe_function(info.Env(), tsfn_);
    return info.Env().Undefined();
  }

  // moved(): bytes every job of this environment wrote so far (progress, not exact per job).
  Napi::Value Moved(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(counters_->moved.load(std::memory_order_relaxed)));
  }

  static void CallJs(napi_env env, napi_value callback, void* context, void* data) {
    std::unique_ptr<RelayDone> done(static_cast<RelayDone*>(data));
    if (env == nullptr || callback == nullptr) return;  // the environment is going away
    static_cast<RelayEngine*>(context)->Forget(done->id);
    napi_value argv[7];
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_create_uint32(env, done->id, &argv[0]);
    napi_create_int32(env, done->err, &argv[1]);
    if (done->syscall != nullptr) {
      napi_create_string_utf8(env, done->syscall, NAPI_AUTO_LENGTH, &argv[2]);
    } else {
      argv[2] = undefined;
    }
    napi_create_double(env, static_cast<double>(done->moved[0]), &argv[3]);
    napi_create_double(env, static_cast<double>(done->moved[1]), &argv[4]);
    napi_get_boolean(env, done->premature, &argv[5]);
    napi_create_int32(env, done->failedEnd, &argv[6]);
    // A throw here is Node's to report as uncaught; lib/relay-engine.ts catches its own.
    napi_call_function(env, undefined, callback, 7, argv, nullptr);
  }

  napi_env env_ = nullptr;
  napi_threadsafe_function tsfn_ = nullptr;
  RelayLoop::Report report_;
  std::shared_ptr<RelayCounters> counters_ = std::shared_ptr<RelayCounters>(new RelayCounters());
  std::unique_ptr<RelayLoop> loop_;  // socket relays
  std::unordered_map<uint32_t, std::unique_ptr<RelayLoop>> uploads_;  // one loop per upload
  std::unordered_map<uint32_t, std::shared_ptr<JobShared>> shared_;   // every running job
  bool tornDown_ = false;
};

void OnTeardown(void* arg) { static_cast<RelayEngine*>(arg)->Teardown(); }

}  // namespace

void ExportRelay(Napi::Env env, Napi::Object exports) {
  exports.Set("RelayEngine", RelayEngine::Define(env));
  exports.Set("checkUploadFile", Napi::Function::New(env, CheckUploadFileJs, "checkUploadFile"));
}

}  // namespace zc
