/* Shared by the C baselines: timing, CPU accounting and the one-line JSON result the
 * bench harness (bench/harness.ts) parses. */
#ifndef ZEROCOPY_BENCH_COMMON_H
#define ZEROCOPY_BENCH_COMMON_H

#include <stdio.h>
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

static inline void die(const char* what) {
  perror(what);
  exit(1);
}

#endif
