// Per-environment state and its teardown (see env.h for the order Node tears down in).
#include "env.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "args.h"
#include "private-fds.h"
#include "socket-claims.h"
#include "exports.h"

namespace zc {

namespace {

// An adopted fd whose environment is gone. A socket with MSG_ZEROCOPY on (or sending
// through io_uring's SEND_ZC, `zeroCopy`) and bytes
// still queued may have pages of this environment's buffers in the kernel, and those
// buffers are freed with the environment: reset the connection (SO_LINGER 0), so the
// peer never receives bytes read from memory that was reused. Otherwise a plain close,
// as Node closes its own handles: the queue drains and a FIN follows.
void CloseAtTeardown(int fd, bool zeroCopy) {
  int on = 0;
  socklen_t len = sizeof on;
  int queued = 0;
  if (!zeroCopy) zeroCopy = getsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &on, &len) == 0 && on != 0;
  if (zeroCopy && ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0) {
    linger abortive{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
  }
  ClosePrivateFd(fd);
}

void Teardown(void* arg) {
  auto* state = static_cast<EnvState*>(arg);
  if (state->tornDown) return;
  state->tornDown = true;
  for (const auto& [fd, zeroCopy] : state->adoptedFds) CloseAtTeardown(fd, zeroCopy);
  state->adoptedFds.clear();
  // Its relays and uploads were stopped by their own hooks (added later, so run first).
  ReleaseSocketClaimsOf(state);
}

// adoptFd(fd, zeroCopy?): from now until releaseFd(fd), the environment closes `fd` if
// it stops first (abortively if `zeroCopy` and bytes are queued). For fds JS owns and
// closes itself in the normal course (call releaseFd right before closing).
Napi::Value AdoptFd(const Napi::CallbackInfo& info) {
  EnvState::Of(info.Env()).adoptedFds[FdArg(info, 0, "fd")] = info[1].ToBoolean().Value();
  return info.Env().Undefined();
}

// releaseFd(fd): JS closes `fd` itself (now, or it was handed elsewhere).
Napi::Value ReleaseFd(const Napi::CallbackInfo& info) {
  EnvState::Of(info.Env()).adoptedFds.erase(FdArg(info, 0, "fd"));
  return info.Env().Undefined();
}

void Finalize(Napi::Env env, EnvState* state) {
  if (!state->tornDown) {
    napi_remove_env_cleanup_hook(env, Teardown, state);
    Teardown(state);
  }
  delete state;
}

}  // namespace

EnvState& EnvState::Of(Napi::Env env) { return *env.GetInstanceData<EnvState>(); }

void ExportEnv(Napi::Env env, Napi::Object exports) {
  auto* state = new EnvState();
  // Cleanup hooks run before the finalizers (and the instance data's finalizer last of
  // all), so the hook always comes first; the finalizer only covers a Node that would
  // skip the hooks.
  napi_add_env_cleanup_hook(env, Teardown, state);
  env.SetInstanceData<EnvState, Finalize>(state);
  exports.Set("adoptFd", Napi::Function::New(env, AdoptFd, "adoptFd"));
  exports.Set("releaseFd", Napi::Function::New(env, ReleaseFd, "releaseFd"));
}

}  // namespace zc
