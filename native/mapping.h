// The one way a file mapping's address leaves mapping.cc: for the kernel to read
// (trySendMapped in socket.cc), never for JS.
#pragma once

#include <napi.h>

#include <cstdint>

namespace zc {

// info[index] must be a Mapping and info[index + 1], info[index + 2] an (offset, length)
// inside it: returns the range's first byte and sets `length`. TypeError for anything
// but a Mapping, RangeError for a range outside it or an unmapped one.
const char* MappedRangeArg(const Napi::CallbackInfo& info, size_t index, uint64_t& length);

}  // namespace zc
