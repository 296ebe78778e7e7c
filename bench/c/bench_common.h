/* Shared by the C baselines: timing, CPU accounting and the one-line JSON result the
 * bench harness (bench/harness.ts) parses. */
#ifndef ZEROCOPY_BENCH_COMMON_H
#define ZEROCOPY_BENCH_COMMON_H

#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

static inline void print_result(FILE* out, unsigned long long bytes, unsigned long long calls, double seconds,
                                double cpu) {
  fprintf(out, "{\"bytes\":%llu,\"calls\":%llu,\"seconds\":%.6f,\"cpuSeconds\":%.6f}\n", bytes, calls, seconds, cpu);
  fflush(out);
}

/* Reads every pending MSG_ZEROCOPY notification without blocking; returns how many
 * send ids completed and adds those the kernel copied to *copied (may be NULL). */
static inline unsigned long long drain_completions(int fd, unsigned long long* copied) {
  unsigned long long done = 0;
  for (;;) {
    char control[128];
    struct msghdr msg = {0};
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return done;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      struct sock_extended_err* ee = (struct sock_extended_err*)CMSG_DATA(c);
      if (ee->ee_origin != SO_EE_ORIGIN_ZEROCOPY) continue;
      unsigned long long n = (unsigned long long)(ee->ee_data - ee->ee_info) + 1;
      done += n;
      if (copied && (ee->ee_code & SO_EE_CODE_ZEROCOPY_COPIED)) *copied += n;
    }
  }
}

static inline void die(const char* what) {
  perror(what);
  exit(1);
}

/* A socket of `proto` ("tcp" or "udp") connected to the IPv4 `address`:`port`. */
static inline int connect_to(const char* proto, const char* address, const char* port) {
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(port));
  if (inet_pton(AF_INET, address, &addr.sin_addr) != 1) die("inet_pton");
  int fd = socket(AF_INET, strcmp(proto, "tcp") == 0 ? SOCK_STREAM : SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr)) die("connect");
  return fd;
}

#endif
