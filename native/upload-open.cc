// Opening and closing an upload's file (receiveToFile to a path) on a thread of its own,
// never on libuv's thread pool.
//
// Why: open(O_CREAT) on a frozen or hung mount (fsfreeze, a hung NFS or FUSE server)
// waits without bound, and so does the close after writes on NFS (it flushes). On the
// pool, four such calls (its default size) stall every fs call, DNS lookup and zlib job
// of the process, aborted or not: an abort can settle the Promise, never free the pool's
// thread. Here each call runs on a detached thread made for it and reports through a
// thread-safe function of its own; a blocked call holds nothing but its thread.
//
//   openUploadFile(path, truncate, done) -> token
//     open(O_WRONLY|O_CREAT|O_NONBLOCK|O_CLOEXEC|O_NOCTTY[|O_TRUNC], 0666), then fstat:
//     done(errno, fd, syscall, type). A non-regular file is closed on the thread and
//     reported with errno 0, fd -1 and its S_IFMT `type`; an ENXIO (a FIFO without a
//     reader, a socket file) comes with the path's type when stat can tell. O_NONBLOCK
//     keeps a FIFO's open from waiting for a reader; it changes nothing for a regular
//     file's writes.
//   closeUploadFile(fd, done) -> token: close(fd), then done(errno). Only an fd that
//     openUploadFile gave this environment (EBADF otherwise); one JS has not closed when
//     the environment stops is closed then, on a thread of its own.
//   abandonUploadCall(token): done is never called; the call ends on its own thread
//     (a late open closes its fd there) and no longer keeps the event loop alive.
//
// The fd is not one of the package's private fds (private-fds.h), for two reasons: the
// relay's start() takes it as a caller's fd and refuses registered ones, and the
// registry closes under its process-wide lock, where a close that flushes to a hung
// server would stall every private fd of the process. It lives only while the upload
// runs, and the relay works on its own private duplicate.
//
// Lifetime: a call's state (Call) is shared by its thread, its thread-safe function
// and the token. Node frees a thread-safe function when its environment stops, whether
// or not a thread still holds it; so the environment's cleanup hook for the call (added
// after the function, so it runs before Node's hook that frees it) takes the function
// away from the thread under the call's lock. A thread that finds it gone, or finds its
// call abandoned, closes its fd itself. A result already queued when the environment
// stops is given to the thread-safe function's callback with no environment: its fd is
// closed on a thread of its own (waited for a bounded time). Each environment also keeps its threads (joinable) and
// the fds it handed to JS (EnvRecord below): when it stops, fds JS still held are closed
// and, only if one of its threads has not exited, the addon stays loaded for good.
#include "glibc-floor.h"  // first: binds the calls below to glibc 2.28's versions
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace zc {

namespace {

// What a call reports: the errno (0 for success), the fd an open made (-1 when none is
// handed over), the syscall that failed, and the file type of a non-regular path.
struct Outcome {
  int err = 0;
  int fd = -1;
  const char* syscall = nullptr;
  uint32_t type = 0;
};

struct Call {
  std::mutex mu;
  // The thread's way to report; null once it released it, or once the environment is
  // stopping (Node frees it then). Guarded by mu.
  napi_threadsafe_function tsfn = nullptr;
  bool abandoned = false;  // guarded by mu
  // JS thread only: whether the environment cleanup hook is still registered.
  bool hooked = false;
};

using CallRef = std::shared_ptr<Call>;

// A thread may outlive its environment, and with it the addon's last user: keep the
// library loaded for the life of the process from then on (Node up to 24 dlclose()s an
// addon when the last environment using it ends). Only then: a worker that ends with
// no call running lets the addon go.
void PinAddon() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&PinAddon), &info) != 0 && info.dli_fname != nullptr) {
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
  });
}

// Runs `work` on a new thread with a small stack: joinable when `thread` is given (its
// id stored there), else detached. False (errno set) if no thread could be made.
template <typename Work>
bool RunThread(Work work, pthread_t* thread) {
  auto* heap = new Work(std::move(work));
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, thread != nullptr ? PTHREAD_CREATE_JOINABLE : PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t id;
  int err = pthread_create(
      &id, &attr,
      [](void* arg) -> void* {
        std::unique_ptr<Work> own(static_cast<Work*>(arg));
        (*own)();
        return nullptr;
      },
      heap);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    delete heap;
    errno = err;
    return false;
  }
  if (thread != nullptr) *thread = id;
  return true;
}

// What each environment has running or handed out, process-wide under one mutex (each
// worker's JS thread calls in):
//  - threads: every call's thread, joinable. A thread is reaped (joined) once it has
//    exited, which pthread_tryjoin_np tells without waiting. When the environment stops
//    with one still running, the addon is pinned and the thread detached: whether a
//    thread still runs this library's code is known exactly, not guessed.
//  - fds: the fds handed to JS and not closed yet: closed (off the JS thread) when the
//    environment stops first, as Node closes a terminated worker's FileHandles.
struct EnvRecord {
  std::vector<pthread_t> threads;
  std::unordered_set<int> fds;
};
struct Records {
  std::mutex mu;
  std::unordered_map<napi_env, EnvRecord> byEnv;
};
Records& TheRecords() {
  static Records* records = new Records;  // never destroyed: a worker may stop during exit
  return *records;
}

void OnEnvStops(void* arg);

// The environment's record, made (with its cleanup hook) on first use. Under the lock.
EnvRecord& RecordOf(Records& r, napi_env env) {
  auto placed = r.byEnv.try_emplace(env);
  if (placed.second) napi_add_env_cleanup_hook(env, OnEnvStops, env);
  return placed.first->second;
}

// Joins the threads that have exited. Under the lock.
void Reap(EnvRecord& rec) {
  auto exited = [](pthread_t t) { return pthread_tryjoin_np(t, nullptr) == 0; };
  rec.threads.erase(std::remove_if(rec.threads.begin(), rec.threads.end(), exited), rec.threads.end());
}

// How long a stopping environment waits for the closes of the fds JS still held.
constexpr int kTeardownCloseWaitMs = 500;
// How long it waits for its call threads to exit: long enough for one whose report just
// went, far shorter than a wait on a frozen mount.
constexpr int kTeardownThreadWaitMs = 200;

// Joins `threads` within `ms` in all; any still running then is detached to end on its
// own, and the addon is pinned loaded (the thread still runs its code).
void JoinOrLeave(std::vector<pthread_t> threads, int ms) {
  if (threads.empty()) return;
  timespec deadline{};
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += ms / 1000;
  deadline.tv_nsec += (ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  bool pinned = false;
  for (pthread_t t : threads) {
    if (pthread_timedjoin_np(t, nullptr, &deadline) == 0) continue;
    if (!pinned) PinAddon();
    pinned = true;
    pthread_detach(t);
  }
}

// Closes `fds` off the JS thread (a close may flush to a hung server); inline if no
// thread can be made. With an environment, the thread is one of its own. Without one
// (it is stopping), the close is waited for kTeardownCloseWaitMs at most; a close still
// blocked then is left to end on its own, and the addon stays loaded.
void CloseAside(napi_env env, std::vector<int> fds) {
  if (fds.empty()) return;
  auto closeAll = [fds] {
    for (int fd : fds) close(fd);
  };
  pthread_t thread;
  if (env != nullptr) {
    Records& r = TheRecords();
    std::lock_guard<std::mutex> lock(r.mu);
    if (RunThread(closeAll, &thread)) {
      RecordOf(r, env).threads.push_back(thread);
    } else {
      closeAll();
    }
    return;
  }
  if (!RunThread(closeAll, &thread)) return closeAll();
  JoinOrLeave({thread}, kTeardownCloseWaitMs);
}

void OnEnvStops(void* arg) {
  std::vector<int> fds;
  std::vector<pthread_t> running;
  {
    Records& r = TheRecords();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.byEnv.find(static_cast<napi_env>(arg));
    if (it == r.byEnv.end()) return;
    Reap(it->second);
    running = std::move(it->second.threads);
    fds.assign(it->second.fds.begin(), it->second.fds.end());
    r.byEnv.erase(it);
  }
  // Outside the lock (an ending thread may take it): a thread whose report just went is
  // about to exit and is joined; only one a frozen mount still holds keeps the addon loaded.
  JoinOrLeave(std::move(running), kTeardownThreadWaitMs);
  CloseAside(nullptr, std::move(fds));
}

void HandOver(napi_env env, int fd) {
  Records& r = TheRecords();
  std::lock_guard<std::mutex> lock(r.mu);
  RecordOf(r, env).fds.insert(fd);
}

// Whether `fd` was handed to this environment's JS (and is not any more).
bool TakeBack(napi_env env, int fd) {
  Records& r = TheRecords();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.byEnv.find(env);
  return it != r.byEnv.end() && it->second.fds.erase(fd) != 0;
}

// On the call's thread: hands `out` to JS, or, when JS no longer wants it (abandoned,
// environment stopping), closes its fd here.
void Report(const CallRef& call, std::unique_ptr<Outcome> out) {
  {
    std::lock_guard<std::mutex> lock(call->mu);
    if (call->tsfn != nullptr) {
      if (!call->abandoned && napi_call_threadsafe_function(call->tsfn, out.get(), napi_tsfn_nonblocking) == napi_ok) {
        out.release();  // CallJs owns it
      }
      napi_release_threadsafe_function(call->tsfn, napi_tsfn_release);
      call->tsfn = nullptr;
    }
  }
  if (out && out->fd >= 0) close(out->fd);
}

// The environment is stopping: the thread must not touch the thread-safe function,
// which Node frees next.
void OnEnvGone(void* arg) {
  Call& call = **static_cast<CallRef*>(arg);
  std::lock_guard<std::mutex> lock(call.mu);
  call.tsfn = nullptr;
  call.hooked = false;
}

// The thread-safe function is freed (its thread released it and its queue is empty, or
// the environment stopped): the hook goes with it.
void OnFinalize(napi_env env, void* data, void* hint) {
  auto* holder = static_cast<CallRef*>(data);
  if ((*holder)->hooked) napi_remove_env_cleanup_hook(env, OnEnvGone, holder);
  delete holder;
}

void CallJs(napi_env env, napi_value callback, void* context, void* data) {
  std::unique_ptr<Outcome> out(static_cast<Outcome*>(data));
  Call& call = **static_cast<CallRef*>(context);
  bool abandoned;
  {
    std::lock_guard<std::mutex> lock(call.mu);
    abandoned = call.abandoned;
  }
  if (env == nullptr || callback == nullptr || abandoned) {
    if (out->fd >= 0) CloseAside(abandoned ? env : nullptr, {out->fd});
    return;
  }
  napi_value argv[4];
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, out->err, &argv[0]);
  napi_create_int32(env, out->fd, &argv[1]);
  if (out->syscall != nullptr) {
    napi_create_string_utf8(env, out->syscall, NAPI_AUTO_LENGTH, &argv[2]);
  } else {
    argv[2] = undefined;
  }
  napi_create_uint32(env, out->type, &argv[3]);
  if (out->fd >= 0) HandOver(env, out->fd);
  // lib/upload-target.ts's callback catches its own throws, so a failure here means JS
  // could not run (the environment is stopping) and nobody took the fd.
  if (napi_call_function(env, undefined, callback, 4, argv, nullptr) != napi_ok && out->fd >= 0 && TakeBack(env, out->fd)) {
    CloseAside(nullptr, {out->fd});  // the environment is stopping
  }
}

// Starts `work` (returning an Outcome) on a thread of its own, reporting to `done`.
// Returns the call's token.
template <typename Work>
Napi::Value Start(Napi::Env env, Napi::Value done, const char* name, Work work) {
  {
    // The environment's hook first, so that it runs after every call's (newest first).
    Records& r = TheRecords();
    std::lock_guard<std::mutex> lock(r.mu);
    RecordOf(r, env);
  }
  CallRef call(new Call());
  auto* holder = new CallRef(call);
  napi_threadsafe_function tsfn = nullptr;
  napi_value resource = Napi::String::New(env, name);
  if (napi_create_threadsafe_function(env, done, nullptr, resource, 0, 1, holder, OnFinalize, holder, CallJs, &tsfn) != napi_ok) {
    delete holder;
    throw Napi::Error::New(env, std::string("zerocopy: cannot create the thread-safe function of ") + name);
  }
  // From here the function owns `holder` (OnFinalize frees it).
  call->tsfn = tsfn;
  if (napi_add_env_cleanup_hook(env, OnEnvGone, holder) == napi_ok) call->hooked = true;
  bool started;
  int err = 0;
  {
    Records& r = TheRecords();
    std::lock_guard<std::mutex> lock(r.mu);
    EnvRecord& rec = RecordOf(r, env);
    Reap(rec);
    pthread_t thread;
    started = RunThread([call, work]() mutable { Report(call, work()); }, &thread);
    if (started) rec.threads.push_back(thread);
    err = errno;
  }
  if (!started) {
    {
      std::lock_guard<std::mutex> lock(call->mu);
      call->tsfn = nullptr;
    }
    napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    throw SystemError(env, err, "pthread_create");
  }
  return Napi::External<CallRef>::New(env, new CallRef(call), [](Napi::Env, CallRef* token) { delete token; });
}

std::unique_ptr<Outcome> OpenForUpload(const std::string& path, bool truncate) {
  auto out = std::make_unique<Outcome>();
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (truncate ? O_TRUNC : 0), 0666);
  // statx (glibc 2.28), not fstat: newer glibc headers bind fstat to fstat64@GLIBC_2.33.
  struct statx st {};
  if (fd < 0) {
    out->err = errno;
    out->syscall = "open";
    if (out->err == ENXIO && statx(AT_FDCWD, path.c_str(), 0, STATX_TYPE, &st) == 0) out->type = st.stx_mode & S_IFMT;
    return out;
  }
  if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, &st) != 0) {
    out->err = errno;
    out->syscall = "fstat";
    close(fd);
    return out;
  }
  if (!S_ISREG(st.stx_mode)) {
    out->type = st.stx_mode & S_IFMT;
    close(fd);
    return out;
  }
  out->fd = fd;
  return out;
}

Napi::Value OpenUploadFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be of type string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.find('\0') != std::string::npos) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE", "The argument 'path' must be a string without null bytes");
  }
  bool truncate = BoolArg(info, 1, "truncate");
  if (!info[2].IsFunction()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"done\" argument must be a function");
  return Start(env, info[2], "zerocopy.openUploadFile", [path, truncate] { return OpenForUpload(path, truncate); });
}

Napi::Value CloseUploadFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  if (!info[1].IsFunction()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"done\" argument must be a function");
  if (!TakeBack(env, fd)) throw SystemError(env, EBADF, "close");  // not an fd openUploadFile gave this environment
  return Start(env, info[1], "zerocopy.closeUploadFile", [fd] {
    auto out = std::make_unique<Outcome>();
    if (close(fd) != 0 && errno != EINTR) {  // after EINTR the fd is closed all the same (Linux)
      out->err = errno;
      out->syscall = "close";
    }
    return out;
  });
}

Napi::Value AbandonUploadCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"token\" argument must be an upload call's token");
  Call& call = **info[0].As<Napi::External<CallRef>>().Data();
  std::lock_guard<std::mutex> lock(call.mu);
  call.abandoned = true;
  // Still held by its thread, so not freed: the call no longer keeps the loop alive.
  if (call.tsfn != nullptr) napi_unref_threadsafe_function(env, call.tsfn);
  return env.Undefined();
}

}  // namespace

void ExportUploadOpen(Napi::Env env, Napi::Object exports) {
  exports.Set("openUploadFile", Napi::Function::New(env, OpenUploadFile, "openUploadFile"));
  exports.Set("closeUploadFile", Napi::Function::New(env, CloseUploadFile, "closeUploadFile"));
  exports.Set("abandonUploadCall", Napi::Function::New(env, AbandonUploadCall, "abandonUploadCall"));
}

}  // namespace zc
