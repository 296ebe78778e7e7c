#include "errors.h"

#include <uv.h>

#include <cerrno>
#include <cstring>

#include "args.h"
#include "exports.h"

namespace zc {

namespace {

// The symbolic name of an errno, from the <errno.h> macros at compile time. glibc's own
// strerrorname_np would do, but it needs glibc 2.32 and the prebuilt binary must load on
// 2.28 (RHEL 8, Debian 10/11, Ubuntu 20.04). Aliases (EWOULDBLOCK, EDEADLOCK, ENOTSUP)
// come after the names glibc gives, so the first match wins.
const char* ErrnoName(int err) {
#define E(name) {name, #name},
  static constexpr struct {
    int value;
    const char* name;
  } kNames[] = {
      E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF)
      E(ECHILD) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(ENOTBLK) E(EBUSY) E(EEXIST)
      E(EXDEV) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY)
      E(ETXTBSY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EMLINK) E(EPIPE) E(EDOM) E(ERANGE)
      E(EDEADLK) E(ENAMETOOLONG) E(ENOLCK) E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENOMSG)
      E(EIDRM) E(ECHRNG) E(EL2NSYNC) E(EL3HLT) E(EL3RST) E(ELNRNG) E(EUNATCH) E(ENOCSI)
      E(EL2HLT) E(EBADE) E(EBADR) E(EXFULL) E(ENOANO) E(EBADRQC) E(EBADSLT) E(EBFONT)
      E(ENOSTR) E(ENODATA) E(ETIME) E(ENOSR) E(ENONET) E(ENOPKG) E(EREMOTE) E(ENOLINK)
      E(EADV) E(ESRMNT) E(ECOMM) E(EPROTO) E(EMULTIHOP) E(EDOTDOT) E(EBADMSG) E(EOVERFLOW)
      E(ENOTUNIQ) E(EBADFD) E(EREMCHG) E(ELIBACC) E(ELIBBAD) E(ELIBSCN) E(ELIBMAX)
      E(ELIBEXEC) E(EILSEQ) E(ERESTART) E(ESTRPIPE) E(EUSERS) E(ENOTSOCK) E(EDESTADDRREQ)
      E(EMSGSIZE) E(EPROTOTYPE) E(ENOPROTOOPT) E(EPROTONOSUPPORT) E(ESOCKTNOSUPPORT)
      E(EOPNOTSUPP) E(EPFNOSUPPORT) E(EAFNOSUPPORT) E(EADDRINUSE) E(EADDRNOTAVAIL)
      E(ENETDOWN) E(ENETUNREACH) E(ENETRESET) E(ECONNABORTED) E(ECONNRESET) E(ENOBUFS)
      E(EISCONN) E(ENOTCONN) E(ESHUTDOWN) E(ETOOMANYREFS) E(ETIMEDOUT) E(ECONNREFUSED)
      E(EHOSTDOWN) E(EHOSTUNREACH) E(EALREADY) E(EINPROGRESS) E(ESTALE) E(EUCLEAN)
      E(ENOTNAM) E(ENAVAIL) E(EISNAM) E(EREMOTEIO) E(EDQUOT) E(ENOMEDIUM) E(EMEDIUMTYPE)
      E(ECANCELED) E(ENOKEY) E(EKEYEXPIRED) E(EKEYREVOKED) E(EKEYREJECTED) E(EOWNERDEAD)
      E(ENOTRECOVERABLE)
#ifdef ERFKILL
      E(ERFKILL)
#endif
#ifdef EHWPOISON
      E(EHWPOISON)
#endif
      E(EWOULDBLOCK) E(EDEADLOCK) E(ENOTSUP)
  };
#undef E
  for (const auto& e : kNames) {
    if (e.value == err) return e.name;
  }
  return nullptr;
}

}  // namespace

// libuv knows names and texts for the errnos Node users meet; for anything else the
// table above, so the code is still the symbolic name, never "Unknown system error".
std::string ErrorName(int err) {
  const char* uvName = uv_err_name(-err);
  if (uvName != nullptr && std::strncmp(uvName, "Unknown", 7) != 0) return uvName;
  const char* name = ErrnoName(err);
  if (name != nullptr) return name;
  return "E" + std::to_string(err);
}

namespace {

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
