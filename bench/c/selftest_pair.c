/* Either side of a transfer done the way the kernel's msg_zerocopy selftest does it,
 * as the C twin of examples/msg_zerocopy (bench/msg-zerocopy.bench.ts):
 *
 *   selftest_pair tx tcp|udp 4|6 <addr> <port> <seconds> <payload> <zerocopy 0|1>
 *   selftest_pair rx tcp|udp 4|6 <addr> <port> <seconds> <payload>
 *
 * tx: SO_SNDBUF 2 MiB, one non-blocking sendmsg of the payload per round (with
 * MSG_ZEROCOPY under zerocopy), completions read after every 32 sends and while poll()
 * says the socket is full, then up to 500 ms for the last ones. rx: SO_RCVBUF 2 MiB,
 * SO_RCVLOWAT 64 KiB; tcp drops each poll's bytes with recv(NULL, 2 MiB, MSG_TRUNC),
 * udp takes each datagram's first 64 bytes with MSG_TRUNC and checks its length and
 * those bytes. Both print the one-line JSON result of bench_common.h (tx on stdout, rx
 * on stderr once its time is up). The payload is 'a' + i % 26. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

#define WAIT_MS 500
#define COMPLETION_EVERY 32

static char pattern[65536];

static int make_socket(int family, int type, const char* addr, int port, struct sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof *ss);
  if (family == 4) {
    struct sockaddr_in* a = (struct sockaddr_in*)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, addr, &a->sin_addr) != 1) die("inet_pton");
    *len = sizeof *a;
  } else {
    struct sockaddr_in6* a = (struct sockaddr_in6*)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((unsigned short)port);
    if (inet_pton(AF_INET6, addr, &a->sin6_addr) != 1) die("inet_pton");
    *len = sizeof *a;
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, type, 0);
  if (fd < 0) die("socket");
  return fd;
}

static void set_int(int fd, int level, int name, int value) {
  if (setsockopt(fd, level, name, &value, sizeof value)) die("setsockopt");
}

static int wait_for(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events};
  int r = poll(&p, 1, WAIT_MS);
  if (r < 0 && errno != EINTR) die("poll");
  return r > 0 && (p.revents & events);
}

static int transmit(int stream, int family, const char* addr, int port, double seconds, int payload, int zerocopy) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd = make_socket(family, stream ? SOCK_STREAM : SOCK_DGRAM, addr, port, &ss, &len);
  set_int(fd, SOL_SOCKET, SO_SNDBUF, 1 << 21);
  if (zerocopy) set_int(fd, SOL_SOCKET, SO_ZEROCOPY, 1);
  if (connect(fd, (struct sockaddr*)&ss, len)) die("connect");
  struct iovec iov = {.iov_base = pattern, .iov_len = (size_t)payload};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  const int flags = MSG_DONTWAIT | (zerocopy ? MSG_ZEROCOPY : 0);
  unsigned long long bytes = 0, calls = 0, expected = 0, completed = 0, since = 0;
  const double t0 = now_seconds(), cpu0 = cpu_seconds(), end = t0 + seconds;
  do {
    ssize_t n = sendmsg(fd, &msg, flags);
    if (n < 0 && errno != EAGAIN && errno != ENOBUFS) die("sendmsg");
    if (n > 0) {
      bytes += (unsigned long long)n;
      calls++;
      since++;
      if (zerocopy) expected++;
    }
    if (zerocopy && since >= COMPLETION_EVERY) {
      completed += drain_completions(fd, NULL);
      since = 0;
    }
    while (!wait_for(fd, POLLOUT))
      if (zerocopy) completed += drain_completions(fd, NULL);
  } while (now_seconds() < end);
  const double stop = now_seconds() + WAIT_MS / 1000.0;
  while (zerocopy && completed < expected && now_seconds() < stop)
    if (wait_for(fd, POLLERR)) completed += drain_completions(fd, NULL);
  if (completed < expected) fprintf(stderr, "missing completions: %llu < %llu\n", completed, expected);
  close(fd);
  print_result(stdout, bytes, calls, now_seconds() - t0, cpu_seconds() - cpu0);
  return 0;
}

static int receive(int stream, int family, const char* addr, int port, double seconds, int payload) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd = make_socket(family, stream ? SOCK_STREAM : SOCK_DGRAM, addr, port, &ss, &len);
  set_int(fd, SOL_SOCKET, SO_RCVBUF, 1 << 21);
  set_int(fd, SOL_SOCKET, SO_RCVLOWAT, 1 << 16);
  set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (bind(fd, (struct sockaddr*)&ss, len)) die("bind");
  if (stream) {
    int lfd = fd;
    if (listen(lfd, 1)) die("listen");
    fd = accept(lfd, NULL, NULL);
    if (fd < 0) die("accept");
    close(lfd);
  }
  unsigned long long bytes = 0, calls = 0;
  char head[64];
  const double t0 = now_seconds(), cpu0 = cpu_seconds(), end = t0 + seconds;
  do {
    ssize_t n = stream ? recv(fd, NULL, 1 << 21, MSG_TRUNC | MSG_DONTWAIT) : recv(fd, head, sizeof head, MSG_TRUNC | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN) die("recv");
    if (n > 0 && !stream) {
      size_t checked = (size_t)n < sizeof head ? (size_t)n : sizeof head;
      if (n != payload || memcmp(head, pattern, checked) != 0) {
        fprintf(stderr, "wrong datagram: %zd bytes\n", n);
        return 1;
      }
    }
    if (n > 0) {
      bytes += (unsigned long long)n;
      calls++;
    }
    wait_for(fd, POLLIN);
  } while (now_seconds() < end);
  close(fd);
  print_result(stderr, bytes, calls, now_seconds() - t0, cpu_seconds() - cpu0);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: %s tx|rx tcp|udp 4|6 addr port seconds payload [zerocopy]\n", argv[0]);
    return 2;
  }
  for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (char)('a' + i % 26);
  const int stream = strcmp(argv[2], "tcp") == 0;
  const int family = atoi(argv[3]);
  const int payload = atoi(argv[7]);
  if (payload < 0 || payload > (int)sizeof pattern) return 2;
  if (strcmp(argv[1], "tx") == 0) return transmit(stream, family, argv[4], atoi(argv[5]), atof(argv[6]), payload, argc > 8 && atoi(argv[8]));
  return receive(stream, family, argv[4], atoi(argv[5]), atof(argv[6]), payload);
}
