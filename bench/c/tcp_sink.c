/* The receiving side of the TCP benchmarks: listens on 127.0.0.1:<port> (0 picks one),
 * prints the port on stdout, then accepts connections one after another and reads and
 * discards until each ends, for as long as it runs. With a second argument `trunc` it
 * discards with recv(MSG_TRUNC), which TCP honours by dropping the bytes without copying
 * them out (as the kernel's msg_zerocopy selftest receiver does): a sink that costs
 * almost nothing, so that what sits between source and sink is what gets measured. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

int main(int argc, char** argv) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)(argc > 1 ? atoi(argv[1]) : 0));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) || listen(lfd, 16)) die("bind/listen");
  socklen_t len = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &len);
  printf("%d\n", ntohs(addr.sin_port));
  fflush(stdout);
  static char buf[1 << 20];
  int flags = argc > 2 && strcmp(argv[2], "trunc") == 0 ? MSG_TRUNC : 0;
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, flags);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
    }
    close(fd);
  }
}
