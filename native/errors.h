// Errors in the shapes Node users already handle:
//  - SystemError: what `fs` throws for a failed syscall (message "CODE: text, syscall",
//    `code`, negative `errno`, `syscall`), built from libuv's own names and texts.
//  - TypeError / RangeError with Node's `ERR_*` codes for bad arguments.
#pragma once

#include <napi.h>

#include <string>

namespace zc {

// The symbolic name of an errno ("EPERM"), as in an Error's `code`.
std::string ErrorName(int err);

// An Error for a failed syscall; `err` is the positive errno value.
Napi::Error SystemError(Napi::Env env, int err, const char* syscall);

[[noreturn]] void ThrowTypeError(Napi::Env env, const char* code, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const char* code, const std::string& message);

}  // namespace zc
