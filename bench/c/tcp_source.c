/* The sending side of the relay benchmarks: connects to 127.0.0.1:<port>, writes
 * <bytes> bytes from one 1 MiB buffer, closes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tcp_source <port> <bytes>\n");
    return 2;
  }
  unsigned long long total = strtoull(argv[2], NULL, 10);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[1]));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr)) die("connect");
  static char buf[1 << 20];
  memset(buf, 0x5a, sizeof buf);
  for (unsigned long long sent = 0; sent < total;) {
    size_t n = total - sent < sizeof buf ? (size_t)(total - sent) : sizeof buf;
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    sent += (unsigned long long)w;
  }
  close(fd);
  return 0;
}
