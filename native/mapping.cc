// Read-only file mappings that only the kernel ever reads.
//
// sendFileZeroCopy sends a file from MAP_SHARED, PROT_READ windows with MSG_ZEROCOPY
// (trySendMapped in socket.cc, through MappedRangeArg):
// the completion then tells when the kernel let go of the pages, which sendfile never
// does. The mapping's memory is never handed to JS (no ArrayBuffer): reading a mapped
// page past a truncated end of file raises SIGBUS and kills the process, whereas the
// kernel reading it on our behalf just fails with EFAULT. Page faults (disk reads) are
// taken off the JS thread by populate(), which uses MADV_POPULATE_READ: it fails with
// EFAULT where a read would have raised SIGBUS.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "args.h"
#include "env.h"
#include "errors.h"
#include "exports.h"
#include "mapping.h"

namespace zc {

namespace {

// [start, start + length) widened to whole pages, as madvise and mincore want it.
struct PageSpan {
  void* begin;
  size_t length;
  size_t pages;
};

PageSpan PagesOf(const char* start, uint64_t length) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(start) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(start) + length;
  return PageSpan{reinterpret_cast<void*>(begin), end - begin, (end - begin + page - 1) / page};
}

class Mapping final : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {
                           InstanceMethod<&Mapping::Populate>("populate"),
                           InstanceMethod<&Mapping::Unmap>("unmap"),
                           InstanceMethod<&Mapping::Resident>("resident"),
                           InstanceAccessor<&Mapping::Length>("length"),
                           InstanceAccessor<&Mapping::Mapped>("mapped"),
                       });
  }

  // new Mapping(fd, offset, length): offset must be page-aligned.
  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    Napi::Env env = info.Env();
    int fd = FdArg(info, 0, "fd");
    std::optional<int64_t> offset = OffsetArg(info, 1, "offset");
    uint64_t length = LengthArg(info, 2, "length");
    const long page = sysconf(_SC_PAGESIZE);
    if (!offset || *offset % page != 0) {
      ThrowRangeError(env, "ERR_OUT_OF_RANGE", "The \"offset\" of a mapping must be a multiple of the page size");
    }
    if (length == 0 || length > (uint64_t(1) << 40)) {
      ThrowRangeError(env, "ERR_OUT_OF_RANGE", "The \"length\" of a mapping must be > 0 and <= 2^40");
    }
    void* addr = mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(*offset));
    if (addr == MAP_FAILED) throw SystemError(env, errno, "mmap");
    addr_ = static_cast<char*>(addr);
    length_ = length;
  }

  ~Mapping() override { Release(); }

  // Bytes [offset, offset + length) of the mapping, or nullptr when out of bounds or
  // unmapped. The only way a mapped address leaves this class.
  const char* Range(uint64_t offset, uint64_t length) const {
    if (addr_ == nullptr || offset > length_ || length > length_ - offset) return nullptr;
    return addr_ + offset;
  }

  // The (offset, length) arguments at `index` and `index + 1`, checked against the
  // mapping: the range's first byte, or a RangeError.
  const char* RangeArg(const Napi::CallbackInfo& info, size_t index, uint64_t& length) const {
    uint64_t offset = LengthArg(info, index, "offset");
    length = LengthArg(info, index + 1, "length");
    const char* start = Range(offset, length);
    if (start == nullptr) {
      ThrowRangeError(info.Env(), "ERR_OUT_OF_RANGE", "The range is outside the mapping, or it is unmapped");
    }
    return start;
  }

 private:
  // populate(offset, length) -> Promise<void>: faults the range in on the thread pool.
  // Rejects with EFAULT when part of it lies past the end of the file.
  Napi::Value Populate(const Napi::CallbackInfo& info) {
    uint64_t length = 0;
    const char* start = RangeArg(info, 0, length);
    auto* worker = new PopulateWorker(info.Env(), this, start, length);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  // resident(offset, length) -> true when every page of the range is in the page cache
  // (mincore): then faulting it in costs no disk read and can stay on the JS thread.
  Napi::Value Resident(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t length = 0;
    const PageSpan span = PagesOf(RangeArg(info, 0, length), length);
    std::vector<unsigned char> vec(span.pages);
    if (vec.empty()) return Napi::Boolean::New(env, true);
    if (mincore(span.begin, span.length, vec.data()) != 0) return Napi::Boolean::New(env, false);
    for (unsigned char v : vec) {
      if (!(v & 1)) return Napi::Boolean::New(env, false);
    }
    return Napi::Boolean::New(env, true);
  }

  // unmap(): the caller guarantees the kernel holds none of its pages any more (every
  // send from it completed). Deferred while a populate() still runs on it.
  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    unmapRequested_ = true;
    if (populating_ == 0) Release();
    return info.Env().Undefined();
  }

  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(length_)); }
  Napi::Value Mapped(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), addr_ != nullptr); }

  void Release() {
    if (addr_ != nullptr) {
      munmap(addr_, length_);
      addr_ = nullptr;
    }
  }

  class PopulateWorker final : public Napi::AsyncWorker {
   public:
    PopulateWorker(Napi::Env env, Mapping* owner, const char* start, uint64_t length)
        : Napi::AsyncWorker(env, "zerocopy.populate"),
          deferred_(Napi::Promise::Deferred::New(env)),
          owner_(owner),
          span_(PagesOf(start, length)) {
      owner_->populating_++;
      ownerRef_ = Napi::Persistent(owner_->Value());  // the mapping outlives the worker
    }
    Napi::Promise Promise() const { return deferred_.Promise(); }
    void Execute() override {
      int r;
      do {
        r = madvise(span_.begin, span_.length, MADV_POPULATE_READ);
      } while (r != 0 && (errno == EINTR || errno == EAGAIN));
      err_ = r == 0 ? 0 : errno;
      if (err_ == EINVAL) {
        // Kernels before 5.14: start readahead instead, and let the send fault.
        madvise(span_.begin, span_.length, MADV_WILLNEED);
        err_ = 0;
      }
    }
    void OnOK() override {
      Napi::Env env = Env();
      if (--owner_->populating_ == 0 && owner_->unmapRequested_) owner_->Release();
      if (err_ != 0) deferred_.Reject(SystemError(env, err_, "madvise").Value());
      else deferred_.Resolve(env.Undefined());
    }

   private:
    Napi::Promise::Deferred deferred_;
    Mapping* owner_;
    Napi::ObjectReference ownerRef_;
    PageSpan span_;  // whole pages, as madvise wants them
    int err_ = 0;
  };

  char* addr_ = nullptr;
  uint64_t length_ = 0;
  int populating_ = 0;
  bool unmapRequested_ = false;

};

}  // namespace

const char* MappedRangeArg(const Napi::CallbackInfo& info, size_t index, uint64_t& length) {
  Napi::Env env = info.Env();
  Napi::Value v = info[index];
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(EnvState::Of(env).mappingClass.Value())) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"mapping\" argument must be a Mapping");
  }
  return Mapping::Unwrap(v.As<Napi::Object>())->RangeArg(info, index + 1, length);
}

void ExportMapping(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = Mapping::Define(env);
  EnvState::Of(env).mappingClass = Napi::Persistent(ctor);
  exports.Set("Mapping", ctor);
}

}  // namespace zc
