// The relay thread (see relay_loop.h for why a thread). Each job's sockets are in the
// thread's epoll edge-triggered for input and output at once, so every readiness change
// of either socket pumps both directions until each is done or waits on EAGAIN.
//
// One direction's rule, both mechanisms: fill the buffer (or pipe) only when it is
// empty, then write all of it out before reading again. That bounds memory to one
// buffer (one pipe) per direction, gives backpressure for free (a slow writer stops the
// reads, so the kernel's receive window closes on the sender), and makes EAGAIN on a
// read unambiguous: with the pipe empty, it can only mean the socket has nothing. (A
// pipe partly full may refuse a splice for lack of slots while the socket still has
// data; with edge-triggered epoll that wait would never end.)
//
// Fairness: a direction does at most kBudget steps per turn; one with work left goes on
// the ready list and the loop polls without sleeping until the list is empty.
//
// Idle memory: a direction that waits for its source with an empty buffer (or pipe)
// gives it back after kIdleReleaseMs, not at once: a busy relay drains its source on
// every wake-up, and mapping a fresh buffer each time would fault its pages in again
// and again. The loop then wakes at the next deadline only while some buffer is held
// by a waiting direction.
#include "glibc-floor.h"  // first: binds the calls below to glibc 2.28's versions
#include "relay_loop.h"
#include "private-fds.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace zc {

namespace {

constexpr int kBudget = 16;
constexpr int kMaxEvents = 256;
constexpr uint32_t kSocketEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
constexpr int64_t kIdleReleaseMs = 100;

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool Holds(const RelayDirection& d) { return d.buf != nullptr || d.pipeRd >= 0; }

// Gives a direction's buffer and pipe back (their bytes must have been written out).
void ReleaseBuffers(RelayJob& job, RelayDirection& d) {
  if (d.buf != nullptr) {
    munmap(d.buf, job.bufferSize);
    d.buf = nullptr;
    if (job.counters) job.counters->held.fetch_sub(static_cast<int64_t>(job.bufferSize), std::memory_order_relaxed);
  }
  if (d.pipeRd >= 0 || d.pipeWr >= 0) {
    if (d.pipeRd >= 0) ClosePrivateFd(d.pipeRd);
    if (d.pipeWr >= 0) ClosePrivateFd(d.pipeWr);
    if (job.counters) job.counters->held.fetch_sub(static_cast<int64_t>(d.pipeCap), std::memory_order_relaxed);
    d.pipeRd = d.pipeWr = -1;
    d.pipeCap = 0;
  }
  d.head = d.tail = 0;
  d.inPipe = 0;
}

// Bytes a direction wrote out: its own count, its job's progress and the totals.
void Count(RelayJob& job, RelayDirection& d, ssize_t n) {
  d.moved += static_cast<uint64_t>(n);
  job.shared->moved.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  if (job.counters) job.counters->moved.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
}

enum class Step { kWait, kAgain, kDone, kFailed };

// `end`: the fd the call failed on (RelayJob::fds index), -1 for neither.
Step Fail(RelayJob& job, int end, int err, const char* syscall) {
  if (err == EAGAIN || err == EWOULDBLOCK) return Step::kWait;
  job.err = err;
  job.syscall = syscall;
  job.failedEnd = end;
  return Step::kFailed;
}

// One write of buffered bytes to the direction's output: send() to a socket (never
// SIGPIPE, never blocking), pwrite() at the tracked offset to a file.
ssize_t WriteOut(RelayDirection& d, const char* p, size_t n) {
  ssize_t r;
  do {
    r = d.outIsFile ? pwrite(d.out, p, n, d.fileOffset) : send(d.out, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r == 0 && n > 0) {
    // pwrite of a regular file never returns 0 for n > 0; do not loop on it.
    errno = EIO;
    return -1;
  }
  if (r > 0 && d.outIsFile) d.fileOffset += r;
  return r;
}

const char* WriteName(const RelayDirection& d) { return d.outIsFile ? "pwrite" : "send"; }

ssize_t SpliceRetry(int in, loff_t* inOff, int out, loff_t* outOff, size_t n) {
  ssize_t r;
  do {
    r = splice(in, inOff, out, outOff, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  } while (r < 0 && errno == EINTR);
  return r;
}

// How much the next read may take: never past `length` in exact mode, so the bytes
// after it stay in the socket for Node.
size_t ReadWant(const RelayDirection& d, size_t room) {
  return d.exact ? static_cast<size_t>(std::min<uint64_t>(room, d.toRead)) : room;
}

// Nothing buffered and nothing more to read: the direction is done.
Step Complete(RelayJob& job, RelayDirection& d) {
  if (d.exact && d.toRead > 0) {
    job.premature = true;
    return Step::kFailed;
  }
  if (d.eof && d.shutdownOnEof && shutdown(d.out, SHUT_WR) != 0 && errno != ENOTCONN) {
    return Fail(job, d.outEnd, errno, "shutdown");
  }
  d.done = true;
  ReleaseBuffers(job, d);  // the other direction may run on for long
  return Step::kDone;
}

// Reads into the empty buffer (copy) or pipe (splice); false with `step` set when the
// read did not bring bytes.
bool Fill(RelayJob& job, RelayDirection& d, Step& step) {
  ssize_t r;
  // Every read of the source happens under the job's gate: once Abandon took the
  // source, no byte of it is read here.
  std::unique_lock<std::mutex> gate(job.shared->gate);
  if (d.inEnd == 0 && job.shared->sourceTaken) {
    step = Fail(job, -1, ECANCELED, nullptr);
    return false;
  }
  if (job.mechanism == RelayMechanism::kCopy) {
    if (d.buf == nullptr) {
      void* p = mmap(nullptr, job.bufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        step = Fail(job, -1, ENOMEM, "mmap");
        return false;
      }
      d.buf = static_cast<char*>(p);
      if (job.counters) job.counters->held.fetch_add(static_cast<int64_t>(job.bufferSize), std::memory_order_relaxed);
    }
    do {
      r = read(d.in, d.buf, ReadWant(d, job.bufferSize));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && d.idleSince == 0) d.idleSince = NowMs();
      step = Fail(job, d.inEnd, errno, "read");
      return false;
    }
    d.head = 0;
    d.tail = static_cast<size_t>(r);
  } else {
    if (d.pipeRd < 0) {
      int p[2];
      if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        step = Fail(job, -1, errno, "pipe2");
        return false;
      }
      d.pipeRd = KeepPrivateFd(p[0]);
      int err = d.pipeRd < 0 ? errno : 0;
      d.pipeWr = KeepPrivateFd(p[1]);
      if (err == 0 && d.pipeWr < 0) err = errno;
      if (err != 0) {
        step = Fail(job, -1, err, "fcntl");
        return false;
      }
      // Best effort: an unprivileged process past its pipe quota keeps the default.
      fcntl(d.pipeWr, F_SETPIPE_SZ, static_cast<int>(job.bufferSize));
      int cap = fcntl(d.pipeWr, F_GETPIPE_SZ);
      d.pipeCap = cap > 0 ? static_cast<size_t>(cap) : 65536;
      if (job.counters) job.counters->held.fetch_add(static_cast<int64_t>(d.pipeCap), std::memory_order_relaxed);
    }
    r = SpliceRetry(d.in, nullptr, d.pipeWr, nullptr, ReadWant(d, d.pipeCap));
    if (r < 0) {
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && d.idleSince == 0) d.idleSince = NowMs();
      step = Fail(job, d.inEnd, errno, "splice");
      return false;
    }
    d.inPipe = static_cast<size_t>(r);
  }
  d.idleSince = 0;
  if (r == 0) d.eof = true;
  if (d.exact) d.toRead -= static_cast<uint64_t>(r);
  return true;
}

Step PumpDirection(RelayJob& job, RelayDirection& d) {
  for (int i = 0; i < kBudget; i++) {
    // Abandoned (an upload whose abort settled while a write blocked): nothing more.
    if (job.shared->abandoned.load(std::memory_order_relaxed)) return Fail(job, -1, ECANCELED, nullptr);
    if (d.prefixSent < d.prefix.size()) {
      ssize_t r = WriteOut(d, d.prefix.data() + d.prefixSent, d.prefix.size() - d.prefixSent);
      if (r < 0) return Fail(job, d.outEnd, errno, WriteName(d));
      d.prefixSent += static_cast<size_t>(r);
      Count(job, d, r);
      if (d.prefixSent == d.prefix.size()) {
        std::vector<char>().swap(d.prefix);
        d.prefixSent = 0;
      }
      continue;
    }
    if (d.head < d.tail) {
      ssize_t r = WriteOut(d, d.buf + d.head, d.tail - d.head);
      if (r < 0) return Fail(job, d.outEnd, errno, WriteName(d));
      d.head += static_cast<size_t>(r);
      Count(job, d, r);
      continue;
    }
    if (d.inPipe > 0) {
      loff_t off = d.fileOffset;
      ssize_t r = SpliceRetry(d.pipeRd, nullptr, d.out, d.outIsFile ? &off : nullptr, d.inPipe);
      if (r == 0) errno = EIO;
      if (r <= 0) return Fail(job, d.outEnd, errno, "splice");
      if (d.outIsFile) d.fileOffset = off;
      d.inPipe -= static_cast<size_t>(r);
      Count(job, d, r);
      continue;
    }
    if (d.eof || (d.exact && d.toRead == 0)) return Complete(job, d);
    Step step = Step::kWait;
    if (!Fill(job, d, step)) return step;
  }
  return Step::kAgain;
}

// A socket of the job reported EPOLLERR: its pending error (a reset), if any.
bool TakeSocketError(RelayJob& job) {
  std::lock_guard<std::mutex> gate(job.shared->gate);
  for (int i = 0; i < 2; i++) {
    if (!job.isSocket[i] || (i == 0 && job.shared->sourceTaken)) continue;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(job.fds[i], SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      job.err = err;
      job.syscall = "read";
      job.failedEnd = i;
      return true;
    }
  }
  return false;
}

void CloseJobResources(RelayJob* job) {
  {
    std::lock_guard<std::mutex> gate(job->shared->gate);
    job->shared->finished = true;
    if (job->shared->sourceTaken) job->fds[0] = -1;  // Abandon closed it
    for (int& fd : job->fds) {
      if (fd >= 0) ClosePrivateFd(fd);
      fd = -1;
    }
  }
  for (RelayDirection& d : job->dirs) {
    ReleaseBuffers(*job, d);
    std::vector<char>().swap(d.prefix);
  }
}

}  // namespace

void FreeRelayJob(RelayJob* job) {
  CloseJobResources(job);
  delete job;
}

int RelayLoop::StartThread() {
  epfd_ = KeepPrivateFd(epoll_create1(EPOLL_CLOEXEC));
  if (epfd_ < 0) return errno;
  uv_mutex_init(&mu_);
  uv_cond_init(&exitedCond_);
  wakefd_ = KeepPrivateFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  int err = 0;
  if (wakefd_ < 0 || epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) err = errno;
  if (err == 0) err = -uv_thread_create(&thread_, ThreadMain, this);
  if (err != 0) {
    if (wakefd_ >= 0) ClosePrivateFd(wakefd_);
    ClosePrivateFd(epfd_);
    wakefd_ = epfd_ = -1;
    uv_cond_destroy(&exitedCond_);
    uv_mutex_destroy(&mu_);
    return err;
  }
  started_ = true;
  return 0;
}

int RelayLoop::Submit(RelayJob* job) {
  if (stopped_) return ESHUTDOWN;
  if (!started_) {
    int err = StartThread();
    if (err != 0) return err;
  }
  uv_mutex_lock(&mu_);
  incoming_.push_back(job);
  uv_mutex_unlock(&mu_);
  Wake();
  return 0;
}

void RelayLoop::Cancel(uint32_t id) {
  if (!started_ || stopped_) return;
  uv_mutex_lock(&mu_);
  cancels_.push_back(id);
  uv_mutex_unlock(&mu_);
  Wake();
}

int64_t RelayLoop::Abandon(uint32_t id, JobShared& shared) {
  {
    std::lock_guard<std::mutex> gate(shared.gate);
    if (shared.finished) return -1;
    shared.abandoned.store(true, std::memory_order_relaxed);
    if (!shared.sourceTaken) {
      shared.sourceTaken = true;
      // Explicitly out of the epoll first: Node's fd keeps the socket open.
      if (shared.sourceRegistered) epoll_ctl(epfd_, EPOLL_CTL_DEL, shared.source, nullptr);
      shared.sourceRegistered = false;
      ClosePrivateFd(shared.source);
    }
  }
  Cancel(id);
  return static_cast<int64_t>(shared.moved.load(std::memory_order_relaxed));
}

void RelayLoop::RequestStop() {
  if (!started_ || stopped_) return;
  uv_mutex_lock(&mu_);
  stopRequested_ = true;
  uv_mutex_unlock(&mu_);
  Wake();
}

bool RelayLoop::Stop(int64_t waitMs) {
  if (stopped_) return true;
  RequestStop();
  stopped_ = true;
  if (!started_) return true;
  uv_mutex_lock(&mu_);
  if (waitMs < 0) {
    while (!exited_) uv_cond_wait(&exitedCond_, &mu_);
  } else {
    uint64_t deadline = uv_hrtime() + static_cast<uint64_t>(waitMs) * 1000000;
    while (!exited_) {
      uint64_t now = uv_hrtime();
      if (now >= deadline || uv_cond_timedwait(&exitedCond_, &mu_, deadline - now) == UV_ETIMEDOUT) break;
    }
  }
  if (!exited_) {
    // Blocked in a file write: the thread frees the loop when the write returns.
    orphaned_ = true;
    uv_mutex_unlock(&mu_);
    pthread_detach(thread_);
    return false;
  }
  uv_mutex_unlock(&mu_);
  uv_thread_join(&thread_);
  CloseOwn();
  return true;
}

void RelayLoop::CloseOwn() {
  for (RelayJob* job : incoming_) FreeRelayJob(job);
  incoming_.clear();
  ClosePrivateFd(wakefd_);
  ClosePrivateFd(epfd_);
  wakefd_ = epfd_ = -1;
  uv_cond_destroy(&exitedCond_);
  uv_mutex_destroy(&mu_);
}

void RelayLoop::Wake() {
  uint64_t one = 1;
  ssize_t r;
  do {
    r = write(wakefd_, &one, sizeof one);
  } while (r < 0 && errno == EINTR);
  // EAGAIN: the counter is saturated, so a wake-up is pending anyway.
}

void RelayLoop::ThreadMain(void* arg) {
  auto* self = static_cast<RelayLoop*>(arg);
  self->Run();
  uv_mutex_lock(&self->mu_);
  self->exited_ = true;
  bool orphaned = self->orphaned_;
  uv_cond_signal(&self->exitedCond_);
  uv_mutex_unlock(&self->mu_);
  if (orphaned) {
    self->CloseOwn();
    delete self;  // Stop() already ran: the destructor does nothing more
  }
}

void RelayLoop::TakeRequests(bool& stop) {
  uint64_t count;
  while (read(wakefd_, &count, sizeof count) > 0) {
  }
  std::vector<RelayJob*> fresh;
  std::vector<uint32_t> cancels;
  uv_mutex_lock(&mu_);
  fresh.swap(incoming_);
  cancels.swap(cancels_);
  stop = stopRequested_;
  uv_mutex_unlock(&mu_);
  if (stop) {
    for (RelayJob* job : fresh) FreeRelayJob(job);
    return;
  }
  for (RelayJob* job : fresh) Begin(job);
  for (uint32_t id : cancels) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    it->second->err = ECANCELED;
    it->second->syscall = nullptr;
    Finish(it->second, true);
  }
}

void RelayLoop::Begin(RelayJob* job) {
  jobs_[job->id] = job;
  for (int i = 0; i < 2; i++) {
    if (!job->isSocket[i]) continue;
    epoll_event ev{};
    ev.events = kSocketEvents;
    ev.data.ptr = job;
    std::unique_lock<std::mutex> gate(job->shared->gate);
    if (i == 0 && job->shared->sourceTaken) continue;  // abandoned before it began
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, job->fds[i], &ev) != 0) {
      job->err = errno;
      job->syscall = "epoll_ctl";
      gate.unlock();
      Finish(job, true);
      return;
    }
    job->registered[i] = true;
    if (i == 0) job->shared->sourceRegistered = true;
  }
  Pump(job);
}

void RelayLoop::Pump(RelayJob* job) {
  if (job->dead) return;
  bool again = false;
  bool allDone = true;
  for (RelayDirection& d : job->dirs) {
    if (!d.active || d.done) continue;
    Step step = PumpDirection(*job, d);
    if (step == Step::kFailed) {
      Finish(job, true);
      return;
    }
    if (step == Step::kWait && d.idleSince != 0 && Holds(d) && nextSweep_ == 0) nextSweep_ = d.idleSince + kIdleReleaseMs;
    if (step == Step::kAgain) again = true;
    if (step != Step::kDone) allDone = false;
  }
  if (allDone) {
    Finish(job, true);
  } else if (again && !job->ready) {
    job->ready = true;
    readyList_.push_back(job);
  }
}

void RelayLoop::Finish(RelayJob* job, bool report) {
  if (job->dead) return;
  job->dead = true;
  jobs_.erase(job->id);
  {
    std::lock_guard<std::mutex> gate(job->shared->gate);
    for (int i = 0; i < 2; i++) {
      // Explicitly: Node's fd keeps the socket open, so closing ours would not remove it.
      bool taken = i == 0 && job->shared->sourceTaken;  // Abandon removed it
      if (job->registered[i] && !taken) epoll_ctl(epfd_, EPOLL_CTL_DEL, job->fds[i], nullptr);
      job->registered[i] = false;
    }
    job->shared->sourceRegistered = false;
  }
  // Closed before JS hears of the end: a settled Promise means no fd of ours is left.
  CloseJobResources(job);
  graveyard_.push_back(job);  // events of this turn may still name it
  if (!report) return;
  auto* done = new RelayDone{job->id, job->err, job->syscall, job->failedEnd, job->premature, {job->dirs[0].moved, job->dirs[1].moved}};
  // Under the mutex: once Stop was asked for, the engine may release the thread-safe
  // function, and no report may reach it.
  uv_mutex_lock(&mu_);
  if (stopRequested_) {
    delete done;
  } else {
    report_(done);
  }
  uv_mutex_unlock(&mu_);
}

void RelayLoop::ReleaseIdle() {
  if (nextSweep_ == 0) return;
  int64_t now = NowMs();
  if (now < nextSweep_) return;
  nextSweep_ = 0;
  for (auto& entry : jobs_) {
    RelayJob* job = entry.second;
    for (RelayDirection& d : job->dirs) {
      if (!Holds(d) || d.idleSince == 0) continue;
      int64_t due = d.idleSince + kIdleReleaseMs;
      if (due <= now) {
        ReleaseBuffers(*job, d);
      } else if (nextSweep_ == 0 || due < nextSweep_) {
        nextSweep_ = due;
      }
    }
  }
}

void RelayLoop::Run() {
  epoll_event evs[kMaxEvents];
  bool stop = false;
  while (!stop) {
    int timeout = -1;
    if (!readyList_.empty()) {
      timeout = 0;
    } else if (nextSweep_ != 0) {
      timeout = static_cast<int>(std::max<int64_t>(0, nextSweep_ - NowMs()) + 1);
    }
    int n = epoll_wait(epfd_, evs, kMaxEvents, timeout);
    if (n < 0) n = 0;  // EINTR
    for (int i = 0; i < n && !stop; i++) {
      auto* job = static_cast<RelayJob*>(evs[i].data.ptr);
      if (job == nullptr) {
        TakeRequests(stop);
      } else if (!job->dead) {
        if ((evs[i].events & EPOLLERR) && TakeSocketError(*job)) {
          Finish(job, true);
        } else {
          Pump(job);
        }
      }
    }
    if (!stop) {
      std::vector<RelayJob*> ready;
      ready.swap(readyList_);
      for (RelayJob* job : ready) {
        job->ready = false;
        Pump(job);
      }
    }
    for (RelayJob* job : graveyard_) delete job;
    graveyard_.clear();
    ReleaseIdle();
  }
  // Stopping (the environment is going away): end every job without a report.
  std::vector<RelayJob*> left;
  for (auto& entry : jobs_) left.push_back(entry.second);
  for (RelayJob* job : left) Finish(job, false);
  for (RelayJob* job : graveyard_) delete job;
  graveyard_.clear();
  readyList_.clear();
}

}  // namespace zc
