// Page alignment of caller memory. Pipes hold one page per slot and MSG_ZEROCOPY pins
// whole pages, so a buffer that starts mid-page costs an extra slot or page; JS cannot
// see addresses, so it asks here.
#include <unistd.h>

#include <cstdint>

#include "args.h"
#include "errors.h"
#include "exports.h"

namespace zc {

namespace {

// pageOffsetOf(view): the first byte's offset within its page (0 = page-aligned).
Napi::Value PageOffsetOf(const Napi::CallbackInfo& info) {
  if (info[0].IsArray()) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "The \"view\" argument must be a single view, not an Array");
  }
  std::vector<iovec> iov;
  ByteViewsArg(info, 0, "view", iov);
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(iov[0].iov_base) % page));
}

}  // namespace

void ExportMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("pageOffsetOf", Napi::Function::New(env, PageOffsetOf, "pageOffsetOf"));
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
}

}  // namespace zc
