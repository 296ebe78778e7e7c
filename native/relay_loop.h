// The relay loop: one thread per Node environment that moves bytes between sockets,
// and from a socket into a file, with no JS in the data path.
//
// Why a thread of its own and not the reactor (reactor.cc): the reactor runs on the JS
// thread and calls into JS for every batch of events; a relay moving gigabytes would
// then compete with the application for the event loop, and a write into a file (page
// cache, dirty-page throttling, a full disk) would block it. The thread owns an epoll
// instance and an eventfd; JS hands it jobs through a mutex-guarded queue and learns of
// each job's end through a thread-safe function (relay.cc). One thread serves every
// relay of the environment: the copy loop is bound by memory bandwidth, not by the
// number of threads, and 1000 idle relays cost nothing but their epoll entries.
//
// Nothing here touches Node-API: the loop knows fds, byte counts and errnos only.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace zc {

enum class RelayMechanism : uint8_t { kCopy = 1, kSplice = 2 };

// One way through a job: bytes read from `in` written to `out`.
struct RelayDirection {
  bool active = false;
  int in = -1;            // borrowed from RelayJob::fds[inEnd]
  int out = -1;           // borrowed from RelayJob::fds[outEnd]
  int inEnd = 0, outEnd = 1;
  bool outIsFile = false;
  int64_t fileOffset = 0;  // where the next byte goes when out is a file
  bool exact = false;      // a length was given: read exactly `toRead` bytes, no more
  uint64_t toRead = 0;     // bytes still to read from `in` (exact mode)
  bool shutdownOnEof = false;  // forward the half-close: shutdown(out, SHUT_WR) at EOF
  std::vector<char> prefix;    // bytes Node had buffered: they go first
  size_t prefixSent = 0;
  // copy mechanism: a buffer read whole, then written whole, then read again
  char* buf = nullptr;
  size_t head = 0, tail = 0;
  // splice mechanism: a pipe filled whole, then drained whole
  int pipeRd = -1, pipeWr = -1;
  size_t inPipe = 0, pipeCap = 0;
  uint64_t moved = 0;  // bytes written to out (prefix included)
  bool eof = false;
  bool done = false;
};

struct RelayJob {
  uint32_t id = 0;
  RelayMechanism mechanism = RelayMechanism::kCopy;
  size_t bufferSize = 0;
  int fds[2] = {-1, -1};  // private duplicates, closed by the loop when the job ends
  bool isSocket[2] = {false, false};
  bool registered[2] = {false, false};
  RelayDirection dirs[2];
  bool ready = false;  // in the loop's ready list (ran out of budget with work left)
  bool dead = false;   // ended; freed at the end of the loop turn
  int err = 0;
  const char* syscall = nullptr;
  int failedEnd = -1;      // which fd the failed call was on (0 a, 1 b), or -1
  bool premature = false;  // EOF came before `length` bytes
};

// What JS learns when a job ends.
struct RelayDone {
  uint32_t id;
  int err;              // 0, or a positive errno (ECANCELED for a cancel)
  const char* syscall;  // the failed call, or null
  int failedEnd;        // 0 a, 1 b, -1 neither (or no failure)
  bool premature;
  uint64_t moved[2];
};

class RelayLoop {
 public:
  using Report = std::function<void(RelayDone*)>;

  explicit RelayLoop(Report report) : report_(std::move(report)) {}
  ~RelayLoop() { Stop(); }

  // Starts the thread on first use; returns 0 or a positive errno.
  int Submit(RelayJob* job);
  // Asks the loop to end a job (reported with ECANCELED); unknown ids are ignored.
  void Cancel(uint32_t id);
  // Ends every job without reporting, joins the thread, closes everything. Idempotent.
  void Stop();
  // Bytes written out by every job so far (read from any thread: progress lines).
  uint64_t Moved() const { return moved_.load(std::memory_order_relaxed); }

 private:
  int StartThread();
  static void ThreadMain(void* arg);
  void Run();
  void TakeRequests(bool& stop);
  void Begin(RelayJob* job);
  void Pump(RelayJob* job);
  void Finish(RelayJob* job, bool report);
  void Wake();

  Report report_;
  std::atomic<uint64_t> moved_{0};
  bool started_ = false;
  bool stopped_ = false;
  uv_thread_t thread_{};
  int epfd_ = -1;
  int wakefd_ = -1;
  uv_mutex_t mu_{};
  // Guarded by mu_:
  std::vector<RelayJob*> incoming_;
  std::vector<uint32_t> cancels_;
  bool stopRequested_ = false;
  // The loop thread's own:
  std::unordered_map<uint32_t, RelayJob*> jobs_;
  std::vector<RelayJob*> readyList_;
  std::vector<RelayJob*> graveyard_;
};

// Closes a job's fds, pipes and buffer, and frees it (no epoll involved).
void FreeRelayJob(RelayJob* job);

}  // namespace zc
