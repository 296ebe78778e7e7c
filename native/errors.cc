#include "errors.h"

#include <uv.h>

#include "args.h"
#include "exports.h"

#include <cstring>

namespace zc {

namespace {

// libuv knows names and texts for the errnos Node users meet; for anything else fall
// back to glibc so the code is still the symbolic name, never "Unknown system error".
std::string ErrorName(int err) {
  const char* uvName = uv_err_name(-err);
  if (uvName != nullptr && std::strncmp(uvName, "Unknown", 7) != 0) return uvName;
  const char* libcName = strerrorname_np(err);
  if (libcName != nullptr) return libcName;
  return "E" + std::to_string(err);
}

std::string ErrorText(int err) {
  const char* uvName = uv_err_name(-err);
  if (uvName != nullptr && std::strncmp(uvName, "Unknown", 7) != 0) return uv_strerror(-err);
  char buf[128];
  return strerror_r(err, buf, sizeof buf);
}

Napi::Error WithCode(Napi::Error error, const char* code) {
  error.Value().Set("code", Napi::String::New(error.Env(), code));
  return error;
}

}  // namespace

Napi::Error SystemError(Napi::Env env, int err, const char* syscall) {
  const std::string code = ErrorName(err);
  Napi::Error error = Napi::Error::New(env, code + ": " + ErrorText(err) + ", " + syscall);
  Napi::Object obj = error.Value();
  obj.Set("errno", Napi::Number::New(env, -err));
  obj.Set("code", Napi::String::New(env, code));
  obj.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

// systemError(errno, syscall): the Error a failed syscall throws, for callers that got
// -errno from a try* call (positive errno in, like the kernel's).
Napi::Value MakeSystemError(const Napi::CallbackInfo& info) {
  int err = static_cast<int>(UintArg(info, 0, "errno", 4095));
  if (!info[1].IsString()) ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "The \"syscall\" argument must be of type string");
  std::string syscall = info[1].As<Napi::String>().Utf8Value();
  return SystemError(info.Env(), err, syscall.c_str()).Value();
}

void ExportErrors(Napi::Env env, Napi::Object exports) {
  exports.Set("systemError", Napi::Function::New(env, MakeSystemError, "systemError"));
}

void ThrowTypeError(Napi::Env env, const char* code, const std::string& message) {
  throw WithCode(Napi::TypeError::New(env, message), code);
}

void ThrowRangeError(Napi::Env env, const char* code, const std::string& message) {
  throw WithCode(Napi::RangeError::New(env, message), code);
}

}  // namespace zc
