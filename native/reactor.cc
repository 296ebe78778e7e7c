// The reactor: tells JS when an attached socket has error-queue entries (MSG_ZEROCOPY
// completions) or, when asked, room to write.
//
// libuv cannot do this for us: it already watches Node's socket fds (uv_poll refuses
// them with EEXIST) and uv_poll stops for good on the first POLLERR. So the reactor owns
// an epoll instance of its own, registers the completion layer's private socket
// duplicates in it edge-triggered (EPOLLERR is implied; EPOLLOUT only while a send
// waits for room), and lets libuv watch just that one epoll fd. An idle socket costs
// nothing; each new batch of completions wakes JS once.
//
// Lifetime: the uv_poll_t and the epoll fd live in a Watcher, which outlives the JS
// Reactor when it must: uv_close completes on a later loop turn, and its callback is
// code in this addon. A worker's environment dlclose()s the addon when it is freed, so
// the close must have completed before that: the Watcher holds a Node-API async cleanup
// hook until its close callback has run, and Node keeps the loop turning for it.
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstddef>

#include "args.h"
#include "errors.h"
#include "exports.h"
#include "private-fds.h"

namespace zc {

namespace {

constexpr int kMaxEvents = 256;

class Reactor;

// The uv_poll_t watching the epoll fd, and the epoll fd. Deleted by its own close
// callback, never before.
struct Watcher {
  uv_poll_t poll;
  int epfd = -1;
  Reactor* owner = nullptr;  // null once the Reactor let go (closed, finalized)
  bool closing = false;
  napi_async_cleanup_hook_handle hook = nullptr;

  // Stops watching and closes; the memory and the hook go in OnClosed. Idempotent.
  void Close() {
    if (closing) return;
    closing = true;
    owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), OnClosed);
  }

  static void OnClosed(uv_handle_t* handle) {
    Watcher* w = reinterpret_cast<Watcher*>(reinterpret_cast<char*>(handle) - offsetof(Watcher, poll));
    ClosePrivateFd(w->epfd);
    napi_async_cleanup_hook_handle hook = w->hook;
    delete w;
    // Last: removing the hook may let Node finish this environment's teardown (and
    // finalize the Reactor) right here.
    if (hook != nullptr) napi_remove_async_cleanup_hook(hook);
  }
};

// The environment is going away with the reactor still open.
void OnEnvTeardown(napi_async_cleanup_hook_handle, void* arg);

class Reactor final : public Napi::ObjectWrap<Reactor> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Reactor",
                       {
                           InstanceMethod<&Reactor::Add>("add"),
                           InstanceMethod<&Reactor::WantWritable>("wantWritable"),
                           InstanceMethod<&Reactor::Remove>("remove"),
                           InstanceMethod<&Reactor::Ref>("ref"),
                           InstanceMethod<&Reactor::Unref>("unref"),
                           InstanceMethod<&Reactor::Close>("close"),
                       });
  }

  // new Reactor(onEvents(events: Uint32Array, count: number)): events holds `count`
  // pairs [token, epoll event bits]. Starts unreferenced: it keeps the process alive
  // only between ref() and unref().
  explicit Reactor(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Reactor>(info), context_(info.Env(), "zerocopy.reactor") {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction()) ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"onEvents\" argument must be a function");
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    events_ = Napi::Persistent(Napi::Uint32Array::New(env, kMaxEvents * 2));
    int epfd = KeepPrivateFd(epoll_create1(EPOLL_CLOEXEC));
    if (epfd < 0) throw SystemError(env, errno, "epoll_create1");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ClosePrivateFd(epfd);
      throw Napi::Error::New(env, "zerocopy: no libuv loop for this environment");
    }
    auto* w = new Watcher;
    w->epfd = epfd;
    int r = uv_poll_init(loop, &w->poll, epfd);
    if (r != 0) {
      // Not a handle of the loop: nothing to close.
      ClosePrivateFd(epfd);
      delete w;
      throw SystemError(env, -r, "uv_poll_init");
    }
    if (napi_add_async_cleanup_hook(env, OnEnvTeardown, w, &w->hook) != napi_ok) w->hook = nullptr;
    r = w->hook == nullptr ? UV_ENOMEM : uv_poll_start(&w->poll, UV_READABLE, OnReadable);
    if (r != 0) {
      w->Close();
      throw SystemError(env, -r, "uv_poll_start");
    }
    uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
    w->owner = this;
    watcher_ = w;
  }

  ~Reactor() override { Shutdown(); }

  // The environment's teardown took the watcher (OnEnvTeardown).
  void Forget() { watcher_ = nullptr; }

 private:
  // add(fd, token, writable, readable?): register an fd this process owns. `readable`
  // asks for EPOLLIN too (the io_uring engine's eventfd).
  Napi::Value Add(const Napi::CallbackInfo& info) {
    return Control(info, EPOLL_CTL_ADD);
  }

  // wantWritable(fd, token, writable): also report EPOLLOUT, or stop reporting it.
  Napi::Value WantWritable(const Napi::CallbackInfo& info) {
    return Control(info, EPOLL_CTL_MOD);
  }

  Napi::Value Control(const Napi::CallbackInfo& info, int op) {
    CheckOpen(info.Env());
    int fd = FdArg(info, 0, "fd");
    uint32_t token = UintArg(info, 1, "token", UINT32_MAX);
    bool writable = info[2].ToBoolean().Value();
    bool readable = info[3].ToBoolean().Value();
    epoll_event ev{};
    ev.events = EPOLLET | EPOLLERR | (writable ? static_cast<uint32_t>(EPOLLOUT) : 0u) |
                (readable ? static_cast<uint32_t>(EPOLLIN) : 0u);
    ev.data.u64 = token;
    if (epoll_ctl(watcher_->epfd, op, fd, &ev) != 0) throw SystemError(info.Env(), errno, "epoll_ctl");
    return info.Env().Undefined();
  }

  // remove(fd): must come before the fd is closed; a closed fd whose file is still open
  // through another fd would otherwise stay registered under a number that is reused.
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    int fd = FdArg(info, 0, "fd");
    if (epoll_ctl(watcher_->epfd, EPOLL_CTL_DEL, fd, nullptr) != 0 && errno != ENOENT) {
      throw SystemError(info.Env(), errno, "epoll_ctl");
    }
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (watcher_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&watcher_->poll));
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (watcher_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&watcher_->poll));
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void CheckOpen(Napi::Env env) const {
    if (watcher_ == nullptr) ThrowTypeError(env, "ERR_INVALID_STATE", "The reactor is closed");
  }

  static void OnReadable(uv_poll_t* handle, int status, int events) {
    Watcher* w = reinterpret_cast<Watcher*>(reinterpret_cast<char*>(handle) - offsetof(Watcher, poll));
    if (w->owner != nullptr) w->owner->Dispatch();
  }

  void Dispatch() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    epoll_event evs[kMaxEvents];
    for (;;) {
      if (watcher_ == nullptr) return;  // closed by the callback
      int n = epoll_wait(watcher_->epfd, evs, kMaxEvents, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      Napi::Uint32Array out = events_.Value();
      uint32_t* words = out.Data();
      for (int i = 0; i < n; i++) {
        words[2 * i] = static_cast<uint32_t>(evs[i].data.u64);
        words[2 * i + 1] = evs[i].events;
      }
      // MakeCallback: Promise reactions and nextTicks run when it returns.
      napi_value argv[2] = {out, Napi::Number::New(env, n)};
      napi_value result;
      napi_status status = napi_make_callback(env, context_, Value(), callback_.Value(), 2, argv, &result);
      if (status != napi_ok) {
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (!pending) {
          // The environment is stopping (worker.terminate(), process exit) and runs no
          // more JS: stop watching; its teardown closes the watcher.
          if (watcher_ != nullptr) uv_poll_stop(&watcher_->poll);
          return;
        }
        // A throw from the JS side must not unwind through libuv: report it the way
        // Node reports any uncaught exception.
        napi_value error;
        napi_get_and_clear_last_exception(env, &error);
        napi_fatal_exception(env, error);
        return;
      }
      if (n < kMaxEvents) return;
    }
  }

  void Shutdown() {
    if (watcher_ != nullptr) {
      watcher_->Close();
      watcher_ = nullptr;
    }
  }

  Napi::AsyncContext context_;
  Napi::FunctionReference callback_;
  Napi::Reference<Napi::Uint32Array> events_;
  Watcher* watcher_ = nullptr;
};

void OnEnvTeardown(napi_async_cleanup_hook_handle, void* arg) {
  auto* w = static_cast<Watcher*>(arg);
  if (w->owner != nullptr) w->owner->Forget();
  w->Close();  // already closing if the Reactor was closed: its callback ends the hook
}

}  // namespace

void ExportReactor(Napi::Env env, Napi::Object exports) {
  exports.Set("Reactor", Reactor::Define(env));
}

}  // namespace zc
