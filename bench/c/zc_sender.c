/* The C baseline for bench/zerocopy-send.bench.ts: the same sends as the Node sender,
 * in the style of the kernel's msg_zerocopy selftest.
 *   zc_sender tcp|udp <ipv4 address> <port> <bytes per send> <seconds> copy|zerocopy [sockets]
 * Sends one buffer over and over on a blocking socket (or round-robin over `sockets`
 * sockets to the same address, default 1: the many-socket server). With zerocopy, it reads the
 * error queue every 8 sends, and on ENOBUFS waits for completions (poll POLLERR);
 * at the end it waits until every id has completed. Prints
 * {"bytes","calls","seconds","cpuSeconds","completions","copied"} on stdout. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

static unsigned long long completed_ids, copied_ids;


static void wait_err(int fd) {
  struct pollfd p = {fd, 0, 0};
  if (poll(&p, 1, 1000) < 0 && errno != EINTR) die("poll");
}

enum { MAX_SOCKETS = 64 };

int main(int argc, char** argv) {
  if (argc != 7 && argc != 8) {
    fprintf(stderr, "usage: %s tcp|udp <addr> <port> <size> <seconds> copy|zerocopy [sockets]\n", argv[0]);
    return 2;
  }
  const size_t size = strtoull(argv[4], NULL, 10);
  const double duration = atof(argv[5]);
  const int zerocopy = strcmp(argv[6], "zerocopy") == 0;
  const int nsock = argc == 8 ? atoi(argv[7]) : 1;
  if (nsock < 1 || nsock > MAX_SOCKETS) die("sockets");

  int fds[MAX_SOCKETS];
  unsigned long long ids[MAX_SOCKETS] = {0}, done[MAX_SOCKETS] = {0};
  int one = 1;
  for (int i = 0; i < nsock; i++) {
    fds[i] = connect_to(argv[1], argv[2], argv[3]);
    if (zerocopy && setsockopt(fds[i], SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one)) die("SO_ZEROCOPY");
  }

  char* buf = aligned_alloc(4096, (size + 4095) / 4096 * 4096);
  memset(buf, 'c', size);
  const int flags = zerocopy ? MSG_ZEROCOPY : 0;
  unsigned long long bytes = 0, calls = 0;
  const double cpu0 = cpu_seconds();
  const double t0 = now_seconds(), end = t0 + duration;
  for (int k = 0; now_seconds() < end; k = (k + 1) % nsock) {
    const int fd = fds[k];
    ssize_t n = send(fd, buf, size, flags);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS && zerocopy) {
        done[k] += drain_completions(fd, &copied_ids);
        if (done[k] == ids[k]) die("ENOBUFS with nothing in flight");
        wait_err(fd);
        continue;
      }
      die("send");
    }
    bytes += (unsigned long long)n;
    calls++;
    if (zerocopy) {
      ids[k]++;
      if (ids[k] % 8 == 0) done[k] += drain_completions(fd, &copied_ids);
    }
  }
  for (int k = 0; zerocopy && k < nsock; k++) {
    while (done[k] < ids[k]) {
      wait_err(fds[k]);
      done[k] += drain_completions(fds[k], &copied_ids);
    }
    completed_ids += done[k];
  }
  const double seconds = now_seconds() - t0;
  const double cpu = cpu_seconds() - cpu0;
  printf("{\"bytes\":%llu,\"calls\":%llu,\"seconds\":%.6f,\"cpuSeconds\":%.6f,\"completions\":%llu,\"copied\":%llu}\n",
         bytes, calls, seconds, cpu, completed_ids, copied_ids);
  for (int k = 0; k < nsock; k++) close(fds[k]);
  free(buf);
  return 0;
}
