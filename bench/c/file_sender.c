/* The C baselines for bench/send-file.bench.ts: a file to a TCP reader on 127.0.0.1.
 *   file_sender <port> <file> sendfile|mmap-send|mmap-zerocopy [chunk bytes] [files]
 * sendfile: sendfile(2) in a loop (no release notice: not an honest "done").
 * mmap-send: read-only mapping, plain send() of each chunk (copies; done on return).
 * mmap-zerocopy: read-only mapping, send(MSG_ZEROCOPY) of each chunk, reading the
 *   error queue as it goes and at the end until every id completed (done = released).
 * `files` (default 1) sends the file that many times, one after another on the one
 * connection, each time opened, stat'ed, mapped, sent, released, unmapped and closed:
 * what a server does per request (the small-file rows).
 * Prints {"bytes","calls","seconds","cpuSeconds"} on stdout. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_common.h"

enum mode { SENDFILE, MMAP_SEND, MMAP_ZEROCOPY };

static unsigned long long calls, ids, completed;

/* Sends the whole file at `path` once; returns its size. */
static size_t send_once(int fd, const char* path, enum mode mode, size_t chunk) {
  int file = open(path, O_RDONLY | O_CLOEXEC);
  if (file < 0) die("open");
  struct stat st;
  if (fstat(file, &st)) die("fstat");
  const size_t size = (size_t)st.st_size;
  size_t sent = 0;
  if (mode == SENDFILE) {
    off_t off = 0;
    while ((size_t)off < size) {
      ssize_t n = sendfile(fd, file, &off, size - (size_t)off);
      if (n < 0) {
        if (errno == EINTR) continue;
        die("sendfile");
      }
      calls++;
    }
    sent = (size_t)off;
  } else {
    const int zerocopy = mode == MMAP_ZEROCOPY;
    char* map = mmap(NULL, size, PROT_READ, MAP_SHARED, file, 0);
    if (map == MAP_FAILED) die("mmap");
    while (sent < size) {
      size_t len = size - sent < chunk ? size - sent : chunk;
      ssize_t n = send(fd, map + sent, len, zerocopy ? MSG_ZEROCOPY : 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS && zerocopy) {
          struct pollfd p = {fd, 0, 0};
          poll(&p, 1, 100);
          completed += drain_completions(fd, NULL);
          continue;
        }
        die("send");
      }
      sent += (size_t)n;
      calls++;
      if (zerocopy) {
        ids++;
        if (ids % 8 == 0) completed += drain_completions(fd, NULL);
      }
    }
    /* Released: only now may the mapping go (and the file change). */
    while (zerocopy && completed < ids) {
      struct pollfd p = {fd, 0, 0};
      poll(&p, 1, 100);
      completed += drain_completions(fd, NULL);
    }
    munmap(map, size);
  }
  close(file);
  return sent;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s <port> <file> sendfile|mmap-send|mmap-zerocopy [chunk] [files]\n", argv[0]);
    return 2;
  }
  const enum mode mode = strcmp(argv[3], "sendfile") == 0 ? SENDFILE : strcmp(argv[3], "mmap-send") == 0 ? MMAP_SEND : MMAP_ZEROCOPY;
  const size_t chunk = argc > 4 ? strtoull(argv[4], NULL, 10) : 256 * 1024;
  const unsigned long files = argc > 5 ? strtoul(argv[5], NULL, 10) : 1;

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[1]));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr)) die("connect");
  int one = 1;
  if (mode == MMAP_ZEROCOPY && setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one)) die("SO_ZEROCOPY");

  size_t sent = 0;
  const double cpu0 = cpu_seconds();
  const double t0 = now_seconds();
  for (unsigned long i = 0; i < files; i++) sent += send_once(fd, argv[2], mode, chunk);
  const double seconds = now_seconds() - t0;
  print_result(stdout, sent, calls, seconds, cpu_seconds() - cpu0);
  close(fd);
  return 0;
}
