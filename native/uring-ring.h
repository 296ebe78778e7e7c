// One io_uring instance, mapped by hand: the submission queue (SQ), its SQE array and
// the completion queue (CQ) are shared memory with the kernel, set up by
// io_uring_setup(2) and mmap(2). Plain C++, no Node-API: uring.cc owns one per Node
// environment, the probe (uring-probe.cc) makes a small one and throws it away.
//
// Memory ordering is the kernel's documented contract: we publish new SQEs by a
// release store of the SQ tail (after writing them), read the CQ tail with an acquire
// load (before reading the entries), and hand CQ entries back by a release store of
// the CQ head (after reading them).
#pragma once

#include "uring-abi.h"

#include <cstddef>
#include <cstdint>

namespace zc::uring {

class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { Close(); }

  // io_uring_setup with `sqEntries` SQEs and `cqEntries` CQEs (both powers of two) and
  // IORING_SETUP_SUBMIT_ALL (a bad SQE fails alone; every SQE handed over is consumed),
  // then maps the rings. 0, or -errno (EPERM under a seccomp profile that refuses
  // io_uring, or kernel.io_uring_disabled; ENOSYS without io_uring; EINVAL on kernels
  // older than 5.18).
  int Open(unsigned sqEntries, unsigned cqEntries);
  void Close();

  int fd() const { return fd_; }
  // io_uring_enter calls that offered SQEs (what tests count: one per tick's flush).
  double submits() const { return submits_; }
  unsigned features() const { return features_; }

  // The next free SQE, zeroed, or nullptr when the SQ is full. Not visible to the
  // kernel until Submit.
  io_uring_sqe* NextSqe();
  // SQEs filled and not yet consumed by the kernel (it consumes them only inside
  // io_uring_enter: no SQPOLL), and those that can still be filled.
  unsigned Unconsumed() const { return sqeTail_ - __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE); }
  unsigned FreeSqes() const { return sqEntries_ - Unconsumed(); }
  // The index the next SQE filled will have (counts up, wrapping at 2^32).
  unsigned tail() const { return sqeTail_; }

  // Publishes the SQEs filled so far and calls io_uring_enter once, offering every SQE
  // not yet consumed and waiting for at least `waitFor` completions (0: none). Returns
  // SQEs consumed, or -errno (EINTR retried).
  int Submit(unsigned waitFor);

  // Takes back the SQEs not consumed: after an io_uring_enter that failed, nothing of
  // them was or will be seen by the kernel.
  void Withdraw();

  // Calls visit(cqe) for every completion queued now, in order, then hands the
  // entries back to the kernel. Returns how many it visited.
  template <typename Visit>
  unsigned Drain(Visit&& visit) {
    unsigned head = *cqHead_;
    const unsigned tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    for (; head != tail; head++, n++) visit(cqes_[head & cqMask_]);
    __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);
    return n;
  }

  // Completions the CQ had no room for wait in the kernel's overflow list (nothing is
  // dropped: IORING_FEAT_NODROP) until an io_uring_enter with GETEVENTS moves them in.
  // Does that when the kernel says some are waiting; Drain again afterwards.
  bool FlushOverflow();

  // Whether the kernel signals a registered eventfd for new completions (Linux 5.8:
  // IORING_CQ_EVENTFD_DISABLED). Off while we submit and reap in one go ourselves.
  void SetEventFdEnabled(bool enabled);

 private:
  int fd_ = -1;
  unsigned features_ = 0;
  double submits_ = 0;
  void* sqMap_ = nullptr;
  size_t sqMapSize_ = 0;
  void* cqMap_ = nullptr;  // == sqMap_ with IORING_FEAT_SINGLE_MMAP
  size_t cqMapSize_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqesSize_ = 0;

  unsigned* sqHead_ = nullptr;
  unsigned* sqTail_ = nullptr;
  unsigned sqMask_ = 0;
  unsigned sqEntries_ = 0;
  unsigned* sqArray_ = nullptr;
  unsigned* sqFlags_ = nullptr;
  unsigned sqeTail_ = 0;  // our next SQE (not yet published)

  unsigned* cqHead_ = nullptr;
  unsigned* cqTail_ = nullptr;
  unsigned cqMask_ = 0;
  unsigned* cqFlags_ = nullptr;
  io_uring_cqe* cqes_ = nullptr;
};

}  // namespace zc::uring
