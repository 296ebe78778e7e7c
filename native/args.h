// Argument checking for every native entry point. Each reader either returns a value
// the kernel may safely be handed or throws a TypeError/RangeError (Node's ERR_* codes);
// no pointer or length reaches a syscall without passing through here.
#pragma once

#include <napi.h>
#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace zc {

// A file descriptor: an integer Number in [0, 2^31 - 1].
int FdArg(const Napi::CallbackInfo& info, size_t index, const char* name);

// A file offset: null/undefined means "use and advance the fd's own position";
// otherwise a Number (safe integer) or BigInt in [0, 2^63 - 1].
std::optional<int64_t> OffsetArg(const Napi::CallbackInfo& info, size_t index, const char* name);

// A byte count: a Number (safe integer) or BigInt in [0, 2^63 - 1].
uint64_t LengthArg(const Napi::CallbackInfo& info, size_t index, const char* name);

// Syscall flags: undefined means 0, otherwise an integer Number in [0, 2^32 - 1].
uint32_t FlagsArg(const Napi::CallbackInfo& info, size_t index, const char* name);

// A count, index or code that is not a flag word: an integer Number in [0, max];
// undefined is not taken for 0.
uint32_t UintArg(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t max);

// A signed count or option value: an integer Number in [min, max]; undefined is not
// taken for 0.
int32_t IntArg(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t min, int32_t max);

// A boolean argument (nothing else is taken for one).
bool BoolArg(const Napi::CallbackInfo& info, size_t index, const char* name);

// An optional boolean field of an options object (undefined -> fallback).
bool BoolOption(Napi::Object options, const char* key, bool fallback);

// The bytes of a Buffer, TypedArray, DataView or ArrayBuffer, or of an Array of them:
// one iovec per view, pointing exactly at the view's bytes. A detached buffer is a
// TypeError. Read this argument last: no JS runs
// between taking the iovecs and the syscall that uses them.
void ByteViewsArg(const Napi::CallbackInfo& info, size_t index, const char* name,
                  std::vector<iovec>& out);

// A TypedArray of one element type (e.g. napi_uint32_array, named "Uint32Array") with
// at least `minLength` elements, for the out-parameters native calls fill in.
Napi::TypedArray TypedArrayArg(const Napi::CallbackInfo& info, size_t index, const char* name,
                               napi_typedarray_type type, const char* typeName, size_t minLength);

// Elements [first, first + max) of an Array of views (fewer at its end), one iovec per
// view, read as ByteViewsArg reads them; returns how many were taken. The same rule:
// read this argument last.
uint32_t ByteViewListArg(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t first,
                         uint32_t max, std::vector<iovec>& out);

// ByteViewListArg for a batch of messages resumed mid-way: the first one starts at
// byte `firstOffset` (a RangeError past its end).
uint32_t MessageListArg(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t first,
                        uint64_t firstOffset, uint32_t max, std::vector<iovec>& out);

}  // namespace zc
