// Registered buffers of the environment's ring (see uring-buffers.h).
#include "uring-buffers.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "uring-abi.h"

namespace zc::uring {

int BufferTable::Open(int ringFd, unsigned slots) {
  io_uring_rsrc_register reg{};
  reg.nr = slots;
  reg.flags = IORING_RSRC_REGISTER_SPARSE;
  const int r = Register(ringFd, IORING_REGISTER_BUFFERS2, &reg, sizeof reg);
  if (r < 0) return r;
  ringFd_ = ringFd;
  used_.assign(slots, false);
  return 0;
}

int BufferTable::Update(unsigned slot, const iovec& iov) const {
  io_uring_rsrc_update2 up{};
  up.offset = slot;
  up.data = reinterpret_cast<uint64_t>(&iov);
  up.nr = 1;
  const int r = Register(ringFd_, IORING_REGISTER_BUFFERS_UPDATE, &up, sizeof up);
  return r < 0 ? r : 0;
}

void* BufferTable::Allocate(size_t length, int& err) {
  if (ringFd_ < 0) {
    err = EBADF;
    return nullptr;
  }
  unsigned slot = 0;
  while (slot < used_.size() && used_[slot]) slot++;
  if (slot == used_.size()) {
    err = ENOSPC;
    return nullptr;
  }
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    err = errno;
    return nullptr;
  }
  const int r = Update(slot, iovec{base, length});
  if (r < 0) {
    munmap(base, length);
    err = -r;
    return nullptr;
  }
  used_[slot] = true;
  regions_[reinterpret_cast<uintptr_t>(base)] = Region{length, slot};
  return base;
}

void BufferTable::Free(void* base) {
  auto it = regions_.find(reinterpret_cast<uintptr_t>(base));
  if (it == regions_.end()) return;
  if (ringFd_ >= 0) {
    Update(it->second.slot, iovec{nullptr, 0});  // an empty iovec clears the slot
    used_[it->second.slot] = false;
  }
  munmap(base, it->second.length);
  regions_.erase(it);
}

int BufferTable::SlotOf(const void* p, size_t length) const {
  if (regions_.empty() || ringFd_ < 0) return -1;
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  auto it = regions_.upper_bound(at);
  if (it == regions_.begin()) return -1;
  --it;
  const uintptr_t base = it->first;
  if (at + length > base + it->second.length) return -1;
  return static_cast<int>(it->second.slot);
}

}  // namespace zc::uring
