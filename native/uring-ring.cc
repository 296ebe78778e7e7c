// Setting up and mapping one io_uring (see uring-ring.h).
#include "uring-ring.h"
#include "private-fds.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

namespace zc::uring {

namespace {

template <typename T>
T* At(void* base, uint32_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

void* MapRing(int fd, size_t size, off_t offset) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace

int Ring::Open(unsigned sqEntries, unsigned cqEntries) {
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = cqEntries;
  int fd = Setup(sqEntries, &p);
  if (fd < 0) return fd;
  fd = KeepPrivateFd(fd);
  if (fd < 0) return -errno;
  fd_ = fd;
  features_ = p.features;

  sqMapSize_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cqMapSize_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) sqMapSize_ = cqMapSize_ = std::max(sqMapSize_, cqMapSize_);
  sqMap_ = MapRing(fd, sqMapSize_, IORING_OFF_SQ_RING);
  cqMap_ = single ? sqMap_ : (sqMap_ != nullptr ? MapRing(fd, cqMapSize_, IORING_OFF_CQ_RING) : nullptr);
  sqesSize_ = p.sq_entries * sizeof(io_uring_sqe);
  sqes_ = cqMap_ != nullptr ? static_cast<io_uring_sqe*>(MapRing(fd, sqesSize_, IORING_OFF_SQES)) : nullptr;
  if (sqes_ == nullptr) {
    const int err = errno;
    Close();
    return -err;
  }

  sqHead_ = At<unsigned>(sqMap_, p.sq_off.head);
  sqTail_ = At<unsigned>(sqMap_, p.sq_off.tail);
  sqMask_ = *At<unsigned>(sqMap_, p.sq_off.ring_mask);
  sqEntries_ = *At<unsigned>(sqMap_, p.sq_off.ring_entries);
  sqArray_ = At<unsigned>(sqMap_, p.sq_off.array);
  sqFlags_ = At<unsigned>(sqMap_, p.sq_off.flags);
  sqeTail_ = *sqTail_;

  cqHead_ = At<unsigned>(cqMap_, p.cq_off.head);
  cqTail_ = At<unsigned>(cqMap_, p.cq_off.tail);
  cqMask_ = *At<unsigned>(cqMap_, p.cq_off.ring_mask);
  cqFlags_ = p.cq_off.flags != 0 ? At<unsigned>(cqMap_, p.cq_off.flags) : nullptr;
  cqes_ = At<io_uring_cqe>(cqMap_, p.cq_off.cqes);
  return 0;
}

void Ring::Close() {
  if (sqes_ != nullptr) munmap(sqes_, sqesSize_);
  if (cqMap_ != nullptr && cqMap_ != sqMap_) munmap(cqMap_, cqMapSize_);
  if (sqMap_ != nullptr) munmap(sqMap_, sqMapSize_);
  sqes_ = nullptr;
  cqMap_ = sqMap_ = nullptr;
  // Closing the fd cancels what is still queued; the kernel keeps the pages of sends in
  // flight referenced until their skbs are freed, then lets the ring go.
  if (fd_ >= 0) ClosePrivateFd(fd_);
  fd_ = -1;
}

io_uring_sqe* Ring::NextSqe() {
  const unsigned head = __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE);
  if (sqeTail_ - head >= sqEntries_) return nullptr;
  io_uring_sqe* sqe = &sqes_[sqeTail_ & sqMask_];
  std::memset(sqe, 0, sizeof *sqe);
  sqArray_[sqeTail_ & sqMask_] = sqeTail_ & sqMask_;
  sqeTail_++;
  return sqe;
}

int Ring::Submit(unsigned waitFor) {
  __atomic_store_n(sqTail_, sqeTail_, __ATOMIC_RELEASE);
  // A retry after EBUSY offers again what the failed enter left in the SQ.
  const unsigned count = Unconsumed();
  if (count == 0 && waitFor == 0) return 0;
  if (count > 0) submits_++;
  int r;
  do {
    r = Enter(fd_, count, waitFor, waitFor > 0 ? IORING_ENTER_GETEVENTS : 0);
  } while (r == -EINTR);
  return r;
}

void Ring::Withdraw() {
  const unsigned head = __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE);
  __atomic_store_n(sqTail_, head, __ATOMIC_RELEASE);
  sqeTail_ = head;
}

bool Ring::FlushOverflow() {
  if (!(__atomic_load_n(sqFlags_, __ATOMIC_ACQUIRE) & IORING_SQ_CQ_OVERFLOW)) return false;
  int r;
  do {
    r = Enter(fd_, 0, 0, IORING_ENTER_GETEVENTS);
  } while (r == -EINTR);
  return true;
}

void Ring::SetEventFdEnabled(bool enabled) {
  if (cqFlags_ == nullptr) return;
  unsigned flags = __atomic_load_n(cqFlags_, __ATOMIC_RELAXED);
  flags = enabled ? flags & ~IORING_CQ_EVENTFD_DISABLED : flags | IORING_CQ_EVENTFD_DISABLED;
  __atomic_store_n(cqFlags_, flags, __ATOMIC_RELEASE);
}

}  // namespace zc::uring
