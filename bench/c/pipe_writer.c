/* The C baseline for bench/vmsplice.bench.ts: fills the pipe on stdout for a fixed
 * time from one page-aligned buffer, with vmsplice() or with write().
 *   pipe_writer vmsplice|write <chunk bytes> <seconds>
 * Prints {"bytes","calls","seconds","cpuSeconds"} on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench_common.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s vmsplice|write <chunk> <seconds>\n", argv[0]);
    return 2;
  }
  const int use_vmsplice = strcmp(argv[1], "vmsplice") == 0;
  const size_t chunk = strtoull(argv[2], NULL, 10);
  const double duration = atof(argv[3]);
  char* buf = aligned_alloc(4096, (chunk + 4095) / 4096 * 4096);
  if (buf == NULL) die("aligned_alloc");
  memset(buf, 'z', chunk);

  unsigned long long bytes = 0, calls = 0;
  const double cpu0 = cpu_seconds();
  const double t0 = now_seconds();
  const double end = t0 + duration;
  while (now_seconds() < end) {
    size_t off = 0;
    while (off < chunk) {
      ssize_t n;
      if (use_vmsplice) {
        struct iovec iov = {buf + off, chunk - off};
        n = vmsplice(STDOUT_FILENO, &iov, 1, 0);
      } else {
        n = write(STDOUT_FILENO, buf + off, chunk - off);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        die(use_vmsplice ? "vmsplice" : "write");
      }
      off += (size_t)n;
      calls++;
    }
    bytes += chunk;
  }
  const double seconds = now_seconds() - t0;
  print_result(stderr, bytes, calls, seconds, cpu_seconds() - cpu0);
  return 0;
}
