/* The C baselines of the relay benchmarks: a one-way proxy. Listens on 127.0.0.1 (an
 * ephemeral port, printed on stdout), accepts one connection, and moves everything it
 * sends until EOF, then prints the one-line result (wall time from accept to the end,
 * this process's CPU time). Blocking I/O in one thread: the cheapest possible loop.
 *   relay <sink port> rw|splice <buffer bytes>      to a TCP sink (then waits for it to close)
 *   relay <file path> file-rw|file-splice <buffer>  into a file, from offset 0 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

static int listen_any(void) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0) die("socket");
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) || listen(lfd, 4)) die("bind/listen");
  socklen_t len = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &len);
  printf("%d\n", ntohs(addr.sin_port));
  fflush(stdout);
  return lfd;
}

static int connect_port(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr*)&addr, sizeof addr)) die("connect");
  return fd;
}

static void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    p += w;
    n -= (size_t)w;
  }
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: relay <sink port | file> rw|splice|file-rw|file-splice <buffer bytes>\n");
    return 2;
  }
  const char* mode = argv[2];
  int toFile = strncmp(mode, "file-", 5) == 0;
  int useSplice = strcmp(mode, toFile ? "file-splice" : "splice") == 0;
  size_t size = (size_t)strtoull(argv[3], NULL, 10);
  int lfd = listen_any();
  int in = accept(lfd, NULL, NULL);
  if (in < 0) die("accept");
  double t0 = now_seconds(), c0 = cpu_seconds();
  int out = toFile ? open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644) : connect_port(atoi(argv[1]));
  if (out < 0) die("open");
  unsigned long long bytes = 0, calls = 0;
  if (useSplice) {
    int p[2];
    if (pipe(p)) die("pipe");
    fcntl(p[1], F_SETPIPE_SZ, (int)size);
    loff_t off = 0;
    for (;;) {
      ssize_t n = splice(in, NULL, p[1], NULL, size, SPLICE_F_MOVE);
      calls++;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die("splice in");
      if (n == 0) break;
      while (n > 0) {
        ssize_t w = splice(p[0], NULL, out, toFile ? &off : NULL, (size_t)n, SPLICE_F_MOVE);
        calls++;
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("splice out");
        n -= w;
        bytes += (unsigned long long)w;
      }
    }
  } else {
    char* buf = malloc(size);
    for (;;) {
      ssize_t n = read(in, buf, size);
      calls++;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die("read");
      if (n == 0) break;
      write_all(out, buf, (size_t)n);
      calls++;
      bytes += (unsigned long long)n;
    }
  }
  if (!toFile) {
    /* Forward the end and wait for the sink to close: the same end point as the Node variants. */
    shutdown(out, SHUT_WR);
    char c;
    while (read(out, &c, 1) > 0) {
    }
  }
  double seconds = now_seconds() - t0, cpu = cpu_seconds() - c0;
  print_result(stdout, bytes, calls, seconds, cpu);
  return 0;
}
