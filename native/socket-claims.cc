// Socket claims, process-wide. A relay or an upload claims its sockets by kernel
// identity (the key socketIdentity gives: the socket cookie) so that no second reader
// or writer joins it, however the socket is named. fds belong to the process, not to a
// Node environment: a worker can name the fd of a socket the main thread relays. So the
// set of claimed sockets lives here, once per process, guarded by a mutex, and each
// claim remembers the environment that made it: a terminated worker's cleanup releases
// whatever it still held (env.cc), and no environment can release another's claim.
#include "socket-claims.h"

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "env.h"
#include "errors.h"
#include "exports.h"

namespace zc {

namespace {

std::mutex claimsMutex;
std::unordered_map<std::string, const EnvState*> claims;  // socket key -> the environment holding it

std::vector<std::string> KeysArg(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "The \"keys\" argument must be an array of strings");
  Napi::Array array = info[0].As<Napi::Array>();
  std::vector<std::string> keys;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value key = array.Get(i);
    if (!key.IsString()) ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "The \"keys\" argument must be an array of strings");
    keys.push_back(key.As<Napi::String>().Utf8Value());
  }
  return keys;
}

// claimSockets(keys) -> -1 when every key is now claimed by this environment, else the
// index of the first key a running relay or upload (of any environment) holds; then
// nothing was claimed. The keys of one call are distinct (the caller checks).
Napi::Value ClaimSockets(const Napi::CallbackInfo& info) {
  std::vector<std::string> keys = KeysArg(info);
  const EnvState* owner = &EnvState::Of(info.Env());
  std::lock_guard<std::mutex> lock(claimsMutex);
  for (size_t i = 0; i < keys.size(); i++) {
    if (claims.count(keys[i]) != 0) return Napi::Number::New(info.Env(), static_cast<double>(i));
  }
  for (const std::string& key : keys) claims.emplace(key, owner);
  return Napi::Number::New(info.Env(), -1);
}

// releaseSockets(keys): the claims this environment holds on `keys` end.
Napi::Value ReleaseSockets(const Napi::CallbackInfo& info) {
  std::vector<std::string> keys = KeysArg(info);
  const EnvState* owner = &EnvState::Of(info.Env());
  std::lock_guard<std::mutex> lock(claimsMutex);
  for (const std::string& key : keys) {
    auto it = claims.find(key);
    if (it != claims.end() && it->second == owner) claims.erase(it);
  }
  return info.Env().Undefined();
}

}  // namespace

void ReleaseSocketClaimsOf(const EnvState* owner) {
  std::lock_guard<std::mutex> lock(claimsMutex);
  for (auto it = claims.begin(); it != claims.end();) {
    it = it->second == owner ? claims.erase(it) : std::next(it);
  }
}

void ExportSocketClaims(Napi::Env env, Napi::Object exports) {
  exports.Set("claimSockets", Napi::Function::New(env, ClaimSockets, "claimSockets"));
  exports.Set("releaseSockets", Napi::Function::New(env, ReleaseSockets, "releaseSockets"));
}

}  // namespace zc
