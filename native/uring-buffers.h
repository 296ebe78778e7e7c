// Memory registered with the environment's ring (IORING_REGISTER_BUFFERS2, sparse, then
// IORING_REGISTER_BUFFERS_UPDATE per buffer): the kernel pins its pages once, and a
// SEND_ZC from it (IORING_RECVSEND_FIXED_BUF) skips pinning them on every send, which
// measured 1.2-1.3x faster in C into the namespace sink (kernel-facts.md).
//
// Each buffer is an anonymous mapping of its own, handed to JS as an external
// ArrayBuffer; its finalizer clears its slot and unmaps it. The kernel holds its own
// reference on a slot's pages for every send from it until that send's notification,
// so clearing a slot (or closing the ring) while sends are in flight is safe. The
// table is shared by the ring and the buffers' finalizers, all on the environment's JS
// thread: whichever lets go last frees it. (A counter of our own: std::shared_ptr's
// would reference __libc_single_threaded, GLIBC_2.32, past the binary's 2.28 floor.)
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <map>
#include <vector>

namespace zc::uring {

class BufferTable {
 public:
  // A new table, held once.
  static BufferTable* Create() { return new BufferTable(); }
  void Retain() { refs_++; }
  void Release() {
    if (--refs_ == 0) delete this;
  }

  // Registers an empty table of `slots` on the ring (Linux 5.19). 0 or -errno.
  int Open(int ringFd, unsigned slots);
  // The ring is closing: nothing more is registered or cleared.
  void Detach() { ringFd_ = -1; }

  // Maps `length` bytes (whole pages) and registers them in a free slot: the address,
  // or nullptr with `err` set (ENOSPC: every slot taken; ENOMEM: RLIMIT_MEMLOCK).
  void* Allocate(size_t length, int& err);
  // Clears the slot of the buffer at `base` and unmaps it.
  void Free(void* base);

  // The slot holding [p, p + length), or -1 if that range is not wholly in one buffer.
  int SlotOf(const void* p, size_t length) const;

 private:
  struct Region {
    size_t length;
    unsigned slot;
  };
  int Update(unsigned slot, const iovec& iov) const;

  BufferTable() = default;
  ~BufferTable() = default;

  unsigned refs_ = 1;
  int ringFd_ = -1;
  std::vector<bool> used_;
  std::map<uintptr_t, Region> regions_;  // by base address
};

}  // namespace zc::uring
