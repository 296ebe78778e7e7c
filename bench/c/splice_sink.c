/* The reading side of the pipe benchmarks: splices everything from stdin (a pipe) to
 * /dev/null until end of file, so the data is never copied to user space.
 * Prints {"bytes","calls","seconds","cpuSeconds"} on stdout. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "bench_common.h"

int main(void) {
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (devnull < 0) die("open /dev/null");
  unsigned long long bytes = 0, calls = 0;
  const double cpu0 = cpu_seconds();
  const double t0 = now_seconds();
  for (;;) {
    ssize_t n = splice(STDIN_FILENO, NULL, devnull, NULL, 1 << 20, SPLICE_F_MOVE);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("splice");
    }
    if (n == 0) break;
    bytes += (unsigned long long)n;
    calls++;
  }
  print_result(stdout, bytes, calls, now_seconds() - t0, cpu_seconds() - cpu0);
  return 0;
}
