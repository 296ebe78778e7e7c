// The reactor: tells JS when an attached socket has error-queue entries (MSG_ZEROCOPY
// completions) or, when asked, room to write.
//
// libuv cannot do this for us: it already watches Node's socket fds (uv_poll refuses
// them with EEXIST) and uv_poll stops for good on the first POLLERR. So the reactor owns
// an epoll instance of its own, registers the completion layer's private socket
// duplicates in it edge-triggered (EPOLLERR is implied; EPOLLOUT only while a send
// waits for room), and lets libuv watch just that one epoll fd. An idle socket costs
// nothing; each new batch of completions wakes JS once.
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace zc {

namespace {

constexpr int kMaxEvents = 256;

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
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw SystemError(env, errno, "epoll_create1");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      close(epfd_);
      throw Napi::Error::New(env, "zerocopy: no libuv loop for this environment");
    }
    poll_ = new uv_poll_t;
    int r = uv_poll_init(loop, poll_, epfd_);
    if (r == 0) r = uv_poll_start(poll_, UV_READABLE, OnReadable);
    if (r != 0) {
      delete poll_;
      poll_ = nullptr;
      close(epfd_);
      throw SystemError(env, -r, "uv_poll_start");
    }
    poll_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    napi_add_env_cleanup_hook(env, CleanupHook, this);
  }

  ~Reactor() override {
    if (epfd_ >= 0) napi_remove_env_cleanup_hook(Env(), CleanupHook, this);
    Shutdown();
  }

 private:
  // add(fd, token, writable): register an fd this process owns.
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
    epoll_event ev{};
    ev.events = EPOLLET | EPOLLERR | (writable ? static_cast<uint32_t>(EPOLLOUT) : 0u);
    ev.data.u64 = token;
    if (epoll_ctl(epfd_, op, fd, &ev) != 0) throw SystemError(info.Env(), errno, "epoll_ctl");
    return info.Env().Undefined();
  }

  // remove(fd): must come before the fd is closed; a closed fd whose file is still open
  // through another fd would otherwise stay registered under a number that is reused.
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    int fd = FdArg(info, 0, "fd");
    if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) != 0 && errno != ENOENT) {
      throw SystemError(info.Env(), errno, "epoll_ctl");
    }
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (epfd_ >= 0) napi_remove_env_cleanup_hook(info.Env(), CleanupHook, this);
    Shutdown();
    return info.Env().Undefined();
  }

  void CheckOpen(Napi::Env env) const {
    if (epfd_ < 0) ThrowTypeError(env, "ERR_INVALID_STATE", "The reactor is closed");
  }

  static void OnReadable(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<Reactor*>(handle->data);
    if (self != nullptr) self->Dispatch();
  }

  void Dispatch() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    epoll_event evs[kMaxEvents];
    for (;;) {
      int n = epoll_wait(epfd_, evs, kMaxEvents, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      Napi::Uint32Array out = events_.Value();
      uint32_t* words = out.Data();
      for (int i = 0; i < n; i++) {
        words[2 * i] = static_cast<uint32_t>(evs[i].data.u64);
        words[2 * i + 1] = evs[i].events;
      }
      try {
        // MakeCallback: Promise reactions and nextTicks run when it returns.
        callback_.MakeCallback(Value(), {out, Napi::Number::New(env, n)}, context_);
      } catch (const Napi::Error& e) {
        // A throw from the JS side must not unwind through libuv: report it the way
        // Node reports any uncaught exception.
        napi_fatal_exception(env, e.Value());
        return;
      }
      if (n < kMaxEvents || epfd_ < 0) return;
    }
  }

  void Shutdown() {
    if (poll_ != nullptr) {
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (epfd_ >= 0) {
      close(epfd_);
      epfd_ = -1;
    }
  }

  static void CleanupHook(void* arg) { static_cast<Reactor*>(arg)->Shutdown(); }

  Napi::AsyncContext context_;
  Napi::FunctionReference callback_;
  Napi::Reference<Napi::Uint32Array> events_;
  int epfd_ = -1;
  uv_poll_t* poll_ = nullptr;
};

}  // namespace

void ExportReactor(Napi::Env env, Napi::Object exports) {
  exports.Set("Reactor", Reactor::Define(env));
}

}  // namespace zc
