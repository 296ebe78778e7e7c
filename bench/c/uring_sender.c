/* The io_uring baseline for bench/zerocopy-send.bench.ts, without liburing: the ring
 * is set up with io_uring_setup(2) and mapped by hand, as native/uring-ring.cc does.
 *   uring_sender tcp|udp <ipv4 address> <port> <bytes per send> <seconds> send_zc|send_zc_fixed|send_zc_fixed_ordered
 * Sends one buffer over and over as IORING_OP_SEND_ZC with IORING_SEND_ZC_REPORT_USAGE,
 * 32 SQEs per io_uring_enter, at most 256 sends whose notification is outstanding. On
 * TCP each batch is a linked chain with MSG_WAITALL, so the stream stays in order.
 * send_zc_fixed sends from a buffer registered with the ring (IORING_REGISTER_BUFFERS,
 * IORING_RECVSEND_FIXED_BUF): the kernel skips pinning its pages on every send.
 * send_zc_fixed_ordered links UDP batches too, as ZeroCopySocket.sendEach must (each
 * datagram goes only after the one before it went: none overtakes one the kernel
 * refused for room, and a refused one stops the rest). At the
 * end it waits for every notification. Prints
 * {"bytes","calls","seconds","cpuSeconds","completions","copied"} on stdout. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench_common.h"

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

enum { SQ_ENTRIES = 64, CQ_ENTRIES = 1024, BATCH = 32, MAX_OUTSTANDING = 256 };

struct ring {
  int fd;
  unsigned *sq_head, *sq_tail, sq_mask, *sq_array, sqe_tail;
  unsigned *cq_head, *cq_tail, cq_mask;
  struct io_uring_sqe* sqes;
  struct io_uring_cqe* cqes;
};

static void ring_open(struct ring* r) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE;
  p.cq_entries = CQ_ENTRIES;
  r->fd = (int)syscall(__NR_io_uring_setup, SQ_ENTRIES, &p);
  if (r->fd < 0) die("io_uring_setup");
  size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (cq_size > sq_size) sq_size = cq_size;  /* IORING_FEAT_SINGLE_MMAP (5.4+) */
  char* sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                 r->fd, IORING_OFF_SQES);
  if (sq == MAP_FAILED || r->sqes == MAP_FAILED) die("mmap");
  r->sq_head = (unsigned*)(sq + p.sq_off.head);
  r->sq_tail = (unsigned*)(sq + p.sq_off.tail);
  r->sq_mask = *(unsigned*)(sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned*)(sq + p.sq_off.array);
  r->sqe_tail = *r->sq_tail;
  r->cq_head = (unsigned*)(sq + p.cq_off.head);
  r->cq_tail = (unsigned*)(sq + p.cq_off.tail);
  r->cq_mask = *(unsigned*)(sq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe*)(sq + p.cq_off.cqes);
}

static struct io_uring_sqe* ring_sqe(struct ring* r) {
  struct io_uring_sqe* sqe = &r->sqes[r->sqe_tail & r->sq_mask];
  memset(sqe, 0, sizeof *sqe);
  r->sq_array[r->sqe_tail & r->sq_mask] = r->sqe_tail & r->sq_mask;
  r->sqe_tail++;
  return sqe;
}

static void ring_enter(struct ring* r, unsigned submit, unsigned wait) {
  __atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
  for (;;) {
    long n = syscall(__NR_io_uring_enter, r->fd, submit, wait, wait ? IORING_ENTER_GETEVENTS : 0, NULL, _NSIG / 8);
    if (n >= 0) return;
    if (errno != EINTR && errno != EBUSY) die("io_uring_enter");
    submit = 0;
  }
}

static unsigned long long bytes, calls, notifs, copied, failed;

/* Results add to bytes/calls; notifications (IORING_CQE_F_NOTIF) are the releases. */
static void reap(struct ring* r) {
  unsigned head = *r->cq_head, tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
  for (; head != tail; head++) {
    struct io_uring_cqe* c = &r->cqes[head & r->cq_mask];
    if (c->flags & IORING_CQE_F_NOTIF) {
      notifs++;
      if ((unsigned)c->res & IORING_NOTIF_USAGE_ZC_COPIED) copied++;
    } else if (c->res >= 0) {
      bytes += (unsigned)c->res;
      calls++;
    } else if (c->res != -ECANCELED) {
      errno = -c->res;
      die("send_zc");
    } else {
      failed++;
    }
    if (!(c->flags & IORING_CQE_F_NOTIF) && !(c->flags & IORING_CQE_F_MORE)) notifs++; /* no notification will come */
  }
  __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
}

int main(int argc, char** argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s tcp|udp <addr> <port> <size> <seconds> send_zc|send_zc_fixed|send_zc_fixed_ordered\n", argv[0]);
    return 2;
  }
  const int tcp = strcmp(argv[1], "tcp") == 0;
  const size_t size = strtoull(argv[4], NULL, 10);
  const double duration = atof(argv[5]);
  const int ordered = strcmp(argv[6], "send_zc_fixed_ordered") == 0;
  const int fixed = ordered || strcmp(argv[6], "send_zc_fixed") == 0;
  const int fd = connect_to(argv[1], argv[2], argv[3]);

  struct ring r;
  ring_open(&r);
  char* buf = aligned_alloc(4096, (size + 4095) / 4096 * 4096);
  memset(buf, 'u', size);
  if (fixed) {
    struct iovec iov = {buf, size};
    if (syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) die("IORING_REGISTER_BUFFERS");
  }
  unsigned long long submitted = 0;
  const double cpu0 = cpu_seconds();
  const double t0 = now_seconds(), end = t0 + duration;
  while (now_seconds() < end) {
    for (int i = 0; i < BATCH; i++) {
      struct io_uring_sqe* sqe = ring_sqe(&r);
      sqe->opcode = IORING_OP_SEND_ZC;
      sqe->fd = fd;
      sqe->addr = (unsigned long)buf;
      sqe->len = (unsigned)size;
      sqe->msg_flags = tcp ? MSG_WAITALL : 0;
      sqe->ioprio = IORING_SEND_ZC_REPORT_USAGE | (fixed ? IORING_RECVSEND_FIXED_BUF : 0);
      sqe->buf_index = 0;
      if ((tcp || ordered) && i + 1 < BATCH) sqe->flags |= IOSQE_IO_LINK;
      sqe->user_data = submitted++;
    }
    /* Wait for this batch's results, and keep the releases outstanding bounded. */
    ring_enter(&r, BATCH, 0);
    reap(&r);
    while (calls + failed < submitted || submitted - notifs > MAX_OUTSTANDING) {
      ring_enter(&r, 0, 1);
      reap(&r);
    }
  }
  while (notifs < submitted) {
    ring_enter(&r, 0, 1);
    reap(&r);
  }
  const double seconds = now_seconds() - t0;
  const double cpu = cpu_seconds() - cpu0;
  printf("{\"bytes\":%llu,\"calls\":%llu,\"seconds\":%.6f,\"cpuSeconds\":%.6f,\"completions\":%llu,\"copied\":%llu}\n",
         bytes, calls, seconds, cpu, notifs, copied);
  close(fd);
  close(r.fd);
  free(buf);
  return 0;
}
