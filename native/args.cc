#include "args.h"

#include <limits.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "errors.h"

namespace zc {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

// What Node prints after "Received": the value for primitives, the type otherwise.
// Never calls into user code (no toString on objects).
std::string Describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return std::string("type boolean (") + (v.As<Napi::Boolean>().Value() ? "true" : "false") + ")";
    case napi_number: return std::string("type number (") + v.ToString().Utf8Value() + ")";
    case napi_bigint: return "type bigint (" + v.ToString().Utf8Value() + "n)";
    case napi_string: {
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.size() > 28) s = s.substr(0, 25) + "...";
      return "type string ('" + s + "')";
    }
    case napi_symbol: return "type symbol";
    case napi_function: return "function";
    default: return v.IsArray() ? "an instance of Array" : "an instance of Object";
  }
}

[[noreturn]] void InvalidType(const Napi::Value& v, const char* name, const char* expected) {
  ThrowTypeError(v.Env(), "ERR_INVALID_ARG_TYPE",
                 std::string("The \"") + name + "\" argument must be " + expected + ". Received " + Describe(v));
}

[[noreturn]] void OutOfRange(const Napi::Value& v, const char* name, const char* range) {
  std::string received = v.IsNumber() || v.IsBigInt() ? v.ToString().Utf8Value() : Describe(v);
  if (v.IsBigInt()) received += "n";
  ThrowRangeError(v.Env(), "ERR_OUT_OF_RANGE",
                  std::string("The value of \"") + name + "\" is out of range. It must be " + range +
                      ". Received " + received);
}

// Integer in [0, max] from a Number (finite, whole, <= 2^53 - 1) or a BigInt.
uint64_t NonNegativeInteger(const Napi::Value& v, const char* name, uint64_t max, bool allowBigInt,
                            const char* expected, const char* range) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::trunc(d) != d || d < 0 || d > kMaxSafeInteger ||
        static_cast<uint64_t>(d) > max) {
      OutOfRange(v, name, range);
    }
    return static_cast<uint64_t>(d);
  }
  if (allowBigInt && v.IsBigInt()) {
    bool lossless = false;
    int64_t asSigned = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless || asSigned < 0 || static_cast<uint64_t>(asSigned) > max) OutOfRange(v, name, range);
    return static_cast<uint64_t>(asSigned);
  }
  InvalidType(v, name, expected);
}

// Bytes per element of a TypedArray type (as Napi::TypedArray::ElementSize, without
// asking V8 for the array's info a second time).
size_t ElementSize(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      return 1;
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    default:
      return 0;  // a type this Node-API version does not name: no bytes, as before
  }
}

// The bytes one view covers, checked against its backing ArrayBuffer so that the
// iovec can never reach past memory the caller owns.
iovec ViewBytes(const Napi::Value& v, const char* name) {
  napi_env env = v.Env();
  napi_value arrayBuffer = nullptr;
  size_t byteOffset = 0;
  size_t byteLength = 0;
  if (v.IsTypedArray()) {
    napi_typedarray_type type = napi_uint8_array;
    size_t elements = 0;
    void* ignored = nullptr;
    NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, v, &type, &elements, &ignored, &arrayBuffer, &byteOffset),
                         iovec{});
    byteLength = elements * ElementSize(type);
  } else if (v.IsDataView()) {
    void* ignored = nullptr;
    NAPI_THROW_IF_FAILED(env, napi_get_dataview_info(env, v, &byteLength, &ignored, &arrayBuffer, &byteOffset),
                         iovec{});
  } else if (v.IsArrayBuffer()) {
    arrayBuffer = v;
  } else {
    InvalidType(v, name, "an instance of Buffer, TypedArray, DataView or ArrayBuffer, or an Array of them");
  }

  // Node-API 8 sees only ArrayBuffers: a view over a SharedArrayBuffer fails these
  // calls, and is refused as a type (its memory may change under the kernel anyway).
  bool detached = false;
  void* base = nullptr;
  size_t bufferLength = 0;
  if (napi_is_detached_arraybuffer(env, arrayBuffer, &detached) != napi_ok ||
      (!detached && napi_get_arraybuffer_info(env, arrayBuffer, &base, &bufferLength) != napi_ok)) {
    InvalidType(v, name, "a view over an ArrayBuffer (SharedArrayBuffer memory is not supported)");
  }
  if (detached) {
    ThrowTypeError(env, "ERR_INVALID_STATE", std::string("The \"") + name + "\" argument's ArrayBuffer is detached");
  }
  if (v.IsArrayBuffer()) byteLength = bufferLength;
  if (byteOffset > bufferLength || byteLength > bufferLength - byteOffset) {
    // V8 keeps views inside their buffers; a resized/shrunk buffer could break that.
    ThrowRangeError(env, "ERR_OUT_OF_RANGE", std::string("The \"") + name + "\" view reaches past its ArrayBuffer");
  }
  if (byteLength == 0) return iovec{nullptr, 0};
  return iovec{static_cast<char*>(base) + byteOffset, byteLength};
}

// Elements [first, first + count) of `list` as iovecs. Every element is read first (a
// getter or proxy may run user code here), then the iovecs are taken without running
// any JS: no element can be swapped or its buffer detached between the check and the
// syscall.
void ViewsOf(Napi::Array list, uint32_t first, uint32_t count, const char* name, std::vector<iovec>& out) {
  std::vector<Napi::Value> items;
  items.reserve(count);
  for (uint32_t i = 0; i < count; i++) items.push_back(list.Get(first + i));
  out.reserve(out.size() + count);
  for (uint32_t i = 0; i < count; i++) {
    try {
      out.push_back(ViewBytes(items[i], name));
    } catch (const Napi::Error&) {
      // Only now build the element's name, so that the error says which one.
      std::string itemName = std::string(name) + "[" + std::to_string(first + i) + "]";
      out.push_back(ViewBytes(items[i], itemName.c_str()));
      throw;
    }
  }
}

}  // namespace

int FdArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) InvalidType(v, name, "of type number");
  return static_cast<int>(NonNegativeInteger(v, name, INT32_MAX, false, "of type number", "an integer >= 0 && <= 2147483647"));
}

std::optional<int64_t> OffsetArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (v.IsNull() || v.IsUndefined()) return std::nullopt;
  return static_cast<int64_t>(NonNegativeInteger(v, name, INT64_MAX, true, "of type number or bigint, or null",
                                                 "an integer >= 0 && <= 2^63 - 1"));
}

uint64_t LengthArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  return NonNegativeInteger(info[index], name, INT64_MAX, true, "of type number or bigint",
                            "an integer >= 0 && <= 2^63 - 1");
}

uint32_t FlagsArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (v.IsUndefined()) return 0;
  return static_cast<uint32_t>(
      NonNegativeInteger(v, name, UINT32_MAX, false, "of type number", "an integer >= 0 && <= 4294967295"));
}

uint32_t UintArg(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t max) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) InvalidType(v, name, "of type number");
  const std::string range = "an integer >= 0 && <= " + std::to_string(max);
  return static_cast<uint32_t>(NonNegativeInteger(v, name, max, false, "of type number", range.c_str()));
}

int32_t IntArg(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t min, int32_t max) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) InvalidType(v, name, "of type number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < min || d > max) {
    const std::string range = "an integer >= " + std::to_string(min) + " && <= " + std::to_string(max);
    OutOfRange(v, name, range.c_str());
  }
  return static_cast<int32_t>(d);
}

bool BoolArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsBoolean()) InvalidType(v, name, "of type boolean");
  return v.As<Napi::Boolean>().Value();
}

bool BoolOption(Napi::Object options, const char* key, bool fallback) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) InvalidType(v, (std::string("options.") + key).c_str(), "of type boolean");
  return v.As<Napi::Boolean>().Value();
}

void ByteViewsArg(const Napi::CallbackInfo& info, size_t index, const char* name, std::vector<iovec>& out) {
  Napi::Value v = info[index];
  if (!v.IsArray()) {
    out.push_back(ViewBytes(v, name));
    return;
  }
  Napi::Array list = v.As<Napi::Array>();
  const uint32_t count = list.Length();
  if (count > IOV_MAX) {
    ThrowRangeError(v.Env(), "ERR_OUT_OF_RANGE",
                    std::string("The \"") + name + "\" array must hold at most " + std::to_string(IOV_MAX) +
                        " views. Received " + std::to_string(count));
  }
  ViewsOf(list, 0, count, name, out);
}

Napi::TypedArray TypedArrayArg(const Napi::CallbackInfo& info, size_t index, const char* name,
                               napi_typedarray_type type, const char* typeName, size_t minLength) {
  Napi::Value v = info[index];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type ||
      v.As<Napi::TypedArray>().ElementLength() < minLength) {
    std::string expected = std::string("an instance of ") + typeName;
    if (minLength > 1) expected += " of " + std::to_string(minLength) + " or more elements";
    InvalidType(v, name, expected.c_str());
  }
  return v.As<Napi::TypedArray>();
}

uint32_t ByteViewListArg(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t first,
                         uint32_t max, std::vector<iovec>& out) {
  Napi::Value v = info[index];
  if (!v.IsArray()) InvalidType(v, name, "an instance of Array");
  Napi::Array list = v.As<Napi::Array>();
  const uint32_t count = list.Length();
  if (first > count) {
    ThrowRangeError(v.Env(), "ERR_OUT_OF_RANGE",
                    std::string("The index ") + std::to_string(first) + " is past the end of \"" + name + "\" (" +
                        std::to_string(count) + " views)");
  }
  const uint32_t take = std::min(max, count - first);
  ViewsOf(list, first, take, name, out);
  return take;
}

uint32_t MessageListArg(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t first,
                        uint64_t firstOffset, uint32_t max, std::vector<iovec>& out) {
  const uint32_t count = ByteViewListArg(info, index, name, first, max, out);
  if (count > 0 && firstOffset > out[0].iov_len) {
    ThrowRangeError(info.Env(), "ERR_OUT_OF_RANGE", "The \"firstOffset\" is past the end of the first message");
  }
  if (count > 0) {
    out[0].iov_base = static_cast<char*>(out[0].iov_base) + firstOffset;
    out[0].iov_len -= firstOffset;
  }
  return count;
}

}  // namespace zc
