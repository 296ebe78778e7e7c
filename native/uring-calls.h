// The send calls of one io_uring between their SQEs and their results (uring.cc owns one
// per ring). A call is what one JS send makes: one SEND_ZC (or SENDMSG_ZC for several
// views), or a linked chain of SEND_ZCs (a sendEach batch, a file window).
//
// Every call is first prepared: its SQEs are filled, and what it points at (its iovecs,
// a msghdr) is copied into the call, which lives until the call is concluded, so the
// caller's arrays may go at once. Flush then hands every prepared SQE to the kernel in
// one io_uring_enter, collects every call's results and concludes the calls in the
// order they were prepared. A synchronous send prepares and flushes at once (then the
// kernel reads nothing after the send returns); a deferred one waits for the flush at
// the end of the tick, so the sends of every socket made in one tick share one enter.
//
// Invariants:
//   - A call's SQEs take the sequence numbers seq, seq + 1, ... (user_data =
//     token << 32 | seq); a result CQE is matched to its call by token and range.
//   - Every SQE carries MSG_DONTWAIT (uring.cc), so the kernel completes it during the
//     io_uring_enter that submits it: the wait for results is for CPU work only.
//   - Completions that are not a prepared call's result (notifications, of any socket)
//     go to the stash, in CQ order, for reap().
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "uring-ring.h"

namespace zc::uring {

class BufferTable;

// What a deferred send returns (constants.URING_PREPARED): no send returns it (bytes
// >= 0, or -errno > -4096).
constexpr double kPrepared = -2147483648.0;

// One completion as JS reads it: 4 words.
struct Completion {
  uint32_t token;
  uint32_t seq;
  int32_t res;
  uint32_t flags;
};

// What a concluded call tells JS (its `out` words, see uring.cc): r is what the call
// returns (bytes for a single send, entries done for a chain, or -errno).
struct CallReport {
  uint32_t token = 0;
  double r = 0;
  double bytes = 0;
  double calls = 0;
  double used = 0;  // SQEs used = sequence numbers taken
  double fixed = 0;
};

class CallBatch {
 public:
  CallBatch(Ring& ring, const BufferTable* buffers, std::vector<Completion>& stash)
      : ring_(ring), buffers_(buffers), stash_(stash) {}

  // Prepares one send of `iov` as a single SEND_ZC (one view) or SENDMSG_ZC. Returns
  // the SQEs it used (1).
  unsigned AddSingle(uint32_t token, uint32_t seq, int fd, std::vector<iovec> iov, unsigned flags);
  // Prepares each iovec as its own SEND_ZC, linked in order: the first that fails (or,
  // on a stream, sends short) ends the chain, as a sendmsg loop would stop. On a stream
  // empty entries are skipped; a datagram is all or nothing, an empty one too. Returns
  // the SQEs it used.
  unsigned AddLinked(uint32_t token, uint32_t seq, int fd, std::vector<iovec> iov, unsigned flags, bool datagram);

  // Moves the CQ's entries to the calls they answer and the rest to the stash. Every
  // drain of the CQ goes through here (reap too), or a submitted call's result would
  // be lost and its flush would wait for it forever. Returns the results found.
  unsigned Collect();

  // Submits every prepared SQE, collects every call's results, and appends each
  // call's report to `reports`, in the order the calls were prepared.
  void Flush(std::vector<CallReport>& reports);

 private:
  struct Call {
    uint32_t token = 0;
    uint32_t seq = 0;
    bool linked = false;
    bool datagram = false;
    bool submitted = false;
    int enterError = 0;  // the io_uring_enter that should have taken its SQEs failed
    std::vector<iovec> iov;
    msghdr msg{};
    std::vector<int> sqeOf;  // linked: the SQE of entry k, or -1 (an empty stream entry)
    std::vector<bool> fixed;  // per SQE: from a registered buffer
    std::vector<int32_t> res;  // per SQE
    std::vector<bool> seen;
    unsigned n = 0;  // SQEs
    unsigned sqeStart = 0;  // the ring index of its first SQE
  };

  io_uring_sqe* PrepSend(Call& call, int fd, const void* base, size_t len, unsigned flags);
  Call& NewCall(uint32_t token, uint32_t seq, std::vector<iovec> iov, unsigned sqes);
  // Submits what is prepared (SQ full, or Flush). Returns 0 or -errno.
  int SubmitPrepared();
  CallReport Conclude(const Call& call) const;

  Ring& ring_;
  const BufferTable* buffers_;
  std::vector<Completion>& stash_;
  std::deque<Call> calls_;  // a deque: a call's msghdr stays where its SQE points
  std::unordered_multimap<uint32_t, size_t> byToken_;
  unsigned awaited_ = 0;  // results of submitted SQEs not yet collected
};

}  // namespace zc::uring
