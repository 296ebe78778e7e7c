// Preparing, flushing and concluding the send calls of one ring (see uring-calls.h).
#include "uring-calls.h"

#include <cerrno>

#include "uring-buffers.h"

namespace zc::uring {

namespace {

constexpr unsigned kZcFlags = IORING_SEND_ZC_REPORT_USAGE;
constexpr int kMaxSubmitAttempts = 64;

uint64_t UserData(uint32_t token, uint32_t seq) { return (static_cast<uint64_t>(token) << 32) | seq; }

}  // namespace

CallBatch::Call& CallBatch::NewCall(uint32_t token, uint32_t seq, std::vector<iovec> iov, unsigned sqes) {
  // A call never needs more SQEs than the SQ holds (uring.cc caps its entries); when
  // those prepared before it leave too little room, they go to the kernel now.
  if (ring_.FreeSqes() < sqes) SubmitPrepared();
  calls_.emplace_back();
  Call& call = calls_.back();
  call.token = token;
  call.seq = seq;
  call.iov = std::move(iov);
  call.sqeStart = ring_.tail();
  byToken_.emplace(token, calls_.size() - 1);
  return call;
}

io_uring_sqe* CallBatch::PrepSend(Call& call, int fd, const void* base, size_t len, unsigned flags) {
  io_uring_sqe* sqe = ring_.NextSqe();
  sqe->opcode = IORING_OP_SEND_ZC;
  sqe->fd = fd;
  sqe->addr = reinterpret_cast<uint64_t>(base);
  sqe->len = static_cast<uint32_t>(len);
  sqe->msg_flags = flags;
  sqe->ioprio = kZcFlags;
  sqe->user_data = UserData(call.token, call.seq + call.n);
  // From a registered buffer's slot when the range lies in one.
  const int slot = len > 0 && buffers_ != nullptr ? buffers_->SlotOf(base, len) : -1;
  if (slot >= 0) {
    sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
    sqe->buf_index = static_cast<uint16_t>(slot);
  }
  call.fixed.push_back(slot >= 0);
  call.n++;
  return sqe;
}

unsigned CallBatch::AddSingle(uint32_t token, uint32_t seq, int fd, std::vector<iovec> iov, unsigned flags) {
  Call& call = NewCall(token, seq, std::move(iov), 1);
  if (call.iov.size() == 1) {
    PrepSend(call, fd, call.iov[0].iov_base, call.iov[0].iov_len, flags);
  } else {
    call.msg.msg_iov = call.iov.data();
    call.msg.msg_iovlen = call.iov.size();
    io_uring_sqe* sqe = PrepSend(call, fd, nullptr, 0, flags);
    sqe->opcode = IORING_OP_SENDMSG_ZC;
    sqe->addr = reinterpret_cast<uint64_t>(&call.msg);  // the call outlives its submission
    sqe->len = 1;
  }
  call.res.assign(call.n, 0);
  call.seen.assign(call.n, false);
  return call.n;
}

unsigned CallBatch::AddLinked(uint32_t token, uint32_t seq, int fd, std::vector<iovec> iov, unsigned flags, bool datagram) {
  unsigned sqes = 0;
  for (const iovec& v : iov) sqes += (datagram || v.iov_len > 0) ? 1 : 0;
  Call& call = NewCall(token, seq, std::move(iov), sqes);
  call.linked = true;
  call.datagram = datagram;
  call.sqeOf.assign(call.iov.size(), -1);
  io_uring_sqe* last = nullptr;
  for (size_t k = 0; k < call.iov.size(); k++) {
    if (!datagram && call.iov[k].iov_len == 0) continue;
    if (last != nullptr) last->flags |= IOSQE_IO_LINK;
    call.sqeOf[k] = static_cast<int>(call.n);
    last = PrepSend(call, fd, call.iov[k].iov_base, call.iov[k].iov_len, flags);
  }
  call.res.assign(call.n, 0);
  call.seen.assign(call.n, false);
  return call.n;
}

int CallBatch::SubmitPrepared() {
  int r = 0;
  for (int attempt = 0;; attempt++) {
    const unsigned before = ring_.Unconsumed();
    if (before == 0) return 0;
    r = ring_.Submit(0);
    if (r >= 0) {
      awaited_ += before - ring_.Unconsumed();
      if (ring_.Unconsumed() == 0) return 0;
      // The kernel took fewer than offered (no memory for more requests). Offering the
      // rest later would cut a chain in two, its tail no longer linked to its head:
      // the rest fails as a socket without room would.
      r = -EAGAIN;
      break;
    }
    // EBUSY: completions overflowed and must be read first; EAGAIN: no memory now.
    if ((r != -EBUSY && r != -EAGAIN) || attempt >= kMaxSubmitAttempts) break;
    Collect();
  }
  // What the kernel did not take, it never will: those SQEs fail with the enter's error.
  const unsigned head = ring_.tail() - ring_.Unconsumed();
  ring_.Withdraw();
  for (Call& call : calls_) {
    for (unsigned i = 0; i < call.n; i++) {
      if (static_cast<int32_t>(call.sqeStart + i - head) < 0 || call.seen[i]) continue;
      call.res[i] = r;
      call.seen[i] = true;
    }
  }
  return r;
}

unsigned CallBatch::Collect() {
  unsigned found = 0;
  ring_.Drain([&](const io_uring_cqe& cqe) {
    const uint32_t token = static_cast<uint32_t>(cqe.user_data >> 32);
    const uint32_t seq = static_cast<uint32_t>(cqe.user_data);
    if (!(cqe.flags & IORING_CQE_F_NOTIF)) {
      auto [from, to] = byToken_.equal_range(token);
      for (; from != to; ++from) {
        Call& call = calls_[from->second];
        const uint32_t i = seq - call.seq;
        if (i >= call.n || call.seen[i]) continue;
        call.res[i] = cqe.res;
        call.seen[i] = true;
        found++;
        return;
      }
    }
    stash_.push_back(Completion{token, seq, cqe.res, cqe.flags});
  });
  awaited_ = found > awaited_ ? 0 : awaited_ - found;
  return found;
}

void CallBatch::Flush(std::vector<CallReport>& reports) {
  if (calls_.empty()) return;
  if (ring_.fd() < 0) {
    // The ring closed under prepared calls (environment teardown): none was sent.
    for (Call& call : calls_) {
      call.res.assign(call.n, -EBADF);
      call.seen.assign(call.n, true);
    }
  } else {
    // While we reap ourselves the kernel need not wake the loop for these results.
    ring_.SetEventFdEnabled(false);
    SubmitPrepared();
    Collect();
    while (awaited_ > 0) {
      const int w = ring_.Submit(1);
      if (w < 0 && w != -EBUSY && w != -EAGAIN && w != -ETIME) {
        // Never expected (the ring is ours and open): results not seen carry the error.
        for (Call& call : calls_) {
          for (unsigned i = 0; i < call.n; i++) {
            if (!call.seen[i]) call.res[i] = w, call.seen[i] = true;
          }
        }
        awaited_ = 0;
        break;
      }
      Collect();
    }
    ring_.SetEventFdEnabled(true);
    // Completions posted before the eventfd was on again would wake nobody: take them.
    Collect();
  }
  for (const Call& call : calls_) reports.push_back(Conclude(call));
  calls_.clear();
  byToken_.clear();
  awaited_ = 0;
}

CallReport CallBatch::Conclude(const Call& call) const {
  CallReport rep;
  rep.token = call.token;
  rep.used = call.n;
  if (!call.linked) {
    // One send: its result, as trySend reports a sendmsg.
    const int32_t res = call.res[0];
    rep.r = res;
    rep.bytes = res > 0 ? res : 0;
    rep.calls = res >= 0 ? 1 : 0;
    rep.fixed = res >= 0 && call.fixed[0] ? 1 : 0;
    return rep;
  }
  // A chain: entries done (>= 0), or -errno when the first send failed.
  size_t done = 0;
  int error = 0;
  for (; done < call.iov.size(); done++) {
    const int k = call.sqeOf[done];
    if (k < 0) continue;  // an empty stream entry: nothing to send
    const int32_t res = call.res[k];
    if (res < 0) {
      error = -res;
      break;
    }
    rep.bytes += static_cast<double>(res);
    rep.calls++;
    rep.fixed += call.fixed[k] ? 1 : 0;
    if (static_cast<size_t>(res) < call.iov[done].iov_len) break;  // short: the rest waits for room
  }
  rep.r = rep.calls == 0 && done == 0 && error != 0 ? -error : static_cast<double>(done);
  return rep;
}

}  // namespace zc::uring
