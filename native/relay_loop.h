// The relay loop: one thread per Node environment that moves bytes between sockets,
// and from a socket into a file, with no JS in the data path.
//
// Why a thread of its own and not the reactor (reactor.cc): the reactor runs on the JS
// thread and calls into JS for every batch of events; a relay moving gigabytes would
// then compete with the application for the event loop, and a write into a file (page
// cache, dirty-page throttling, a full disk) would block it. The thread owns an epoll
// instance and an eventfd; JS hands it jobs through a mutex-guarded queue and learns of
// each job's end through a thread-safe function (relay.cc). One thread serves every
// socket relay of the environment: the copy loop is bound by memory bandwidth, not by
// the number of threads. An idle relay costs its epoll entries only: a direction that
// waited with an empty buffer for kIdleReleaseMs gives its buffer (or pipe) back.
//
// Uploads (socket -> file) each get a loop of their own (relay.cc): a file write can
// block without bound (a frozen filesystem, a hung NFS or FUSE server, a dying disk),
// and no socket relay, nor another upload, may wait behind it. Such a job can be
// abandoned from the JS thread while its thread is blocked (Abandon): the source
// socket is taken out of the thread's hands at once, under the job's gate, so the
// thread never reads from it again; the write in progress finishes when the kernel
// lets it, and the thread then ends without writing more.
//
// Nothing here touches Node-API: the loop knows fds, byte counts and errnos only.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace zc {

enum class RelayMechanism : uint8_t { kCopy = 1, kSplice = 2 };

// Totals over every loop of an environment, read from the JS thread at any time. Shared
// (not owned by one loop): an abandoned upload's thread may outlive the engine.
struct RelayCounters {
  std::atomic<uint64_t> moved{0};  // bytes written out by every job so far
  std::atomic<int64_t> held{0};    // bytes of buffers and pipe capacity held right now
};

// What the JS thread and a job's thread share about one job, alive as long as either
// side holds it.
struct JobShared {
  std::atomic<uint64_t> moved{0};  // bytes written out by this job (progress)
  std::atomic<bool> abandoned{false};
  // The gate: held by the job's thread around every use of the source socket (reads,
  // its pending error, epoll registration, close) and by Abandon. Guarded by it:
  std::mutex gate;
  bool finished = false;     // the thread closed the job's fds
  bool sourceTaken = false;  // Abandon closed the source socket: the thread never touches it again
  int source = -1;           // the job's duplicate of the source socket (fds[0])
  bool sourceRegistered = false;
};

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
  // copy mechanism: a buffer read whole, then written whole, then read again (mapped
  // on first use, unmapped when idle: malloc would keep the pages resident)
  char* buf = nullptr;
  size_t head = 0, tail = 0;
  // splice mechanism: a pipe filled whole, then drained whole
  int pipeRd = -1, pipeWr = -1;
  size_t inPipe = 0, pipeCap = 0;
  uint64_t moved = 0;  // bytes written to out (prefix included)
  int64_t idleSince = 0;  // ms (monotonic) since the direction waits with its buffer empty, or 0
  bool eof = false;
  bool done = false;
};

struct RelayJob {
  uint32_t id = 0;
  std::shared_ptr<JobShared> shared{new JobShared()};  // not make_shared: its type tag is a GNU_UNIQUE symbol (glibc never unloads the addon then)
  std::shared_ptr<RelayCounters> counters;
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

  RelayLoop(Report report, std::shared_ptr<RelayCounters> counters)
      : report_(std::move(report)), counters_(std::move(counters)) {}
  ~RelayLoop() { Stop(-1); }

  // Starts the thread on first use; returns 0 or a positive errno.
  int Submit(RelayJob* job);
  // Asks the loop to end a job (reported with ECANCELED); unknown ids are ignored.
  void Cancel(uint32_t id);
  // Ends the job at once as far as its source socket goes (see above), then cancels it.
  // Returns the bytes written out so far, or -1 if the job had already finished.
  int64_t Abandon(uint32_t id, JobShared& shared);
  // Asks the thread to end every job without reporting (no report is made from now on).
  void RequestStop();
  // RequestStop(), then waits for the thread (forever with waitMs < 0) and closes
  // everything. false: the thread is still blocked (in a file write) after waitMs; it
  // then frees the loop itself when it ends, and the caller must let go of the loop
  // without deleting it. Idempotent.
  bool Stop(int64_t waitMs);

 private:
  int StartThread();
  static void ThreadMain(void* arg);
  void Run();
  void TakeRequests(bool& stop);
  void Begin(RelayJob* job);
  void Pump(RelayJob* job);
  void Finish(RelayJob* job, bool report);
  void Wake();
  void ReleaseIdle();
  void CloseOwn();

  Report report_;
  std::shared_ptr<RelayCounters> counters_;
  bool started_ = false;
  bool stopped_ = false;
  uv_thread_t thread_{};
  uv_cond_t exitedCond_{};
  int epfd_ = -1;
  int wakefd_ = -1;
  uv_mutex_t mu_{};
  // Guarded by mu_:
  std::vector<RelayJob*> incoming_;
  std::vector<uint32_t> cancels_;
  bool stopRequested_ = false;
  bool exited_ = false;    // the thread left Run()
  bool orphaned_ = false;  // Stop gave up waiting: the thread frees the loop
  // The loop thread's own:
  std::unordered_map<uint32_t, RelayJob*> jobs_;
  std::vector<RelayJob*> readyList_;
  std::vector<RelayJob*> graveyard_;
  int64_t nextSweep_ = 0;  // when idle buffers are next looked at (0: none waits)
};

// Closes a job's fds, pipes and buffer, and frees it (no epoll involved).
void FreeRelayJob(RelayJob* job);

}  // namespace zc
