// Whether the io_uring engine can run here: probed once per process by lib/engine.ts,
// which falls back to the epoll engine (MSG_ZEROCOPY + error queue) with the reason
// this returns. Everything the engine relies on is tried for real on a throwaway ring:
//  - io_uring_setup itself: refused with EPERM by Docker's default seccomp profile and
//    by kernel.io_uring_disabled = 2 (or = 1 outside io_uring_group), ENOSYS where the
//    kernel has no io_uring, EINVAL before Linux 5.18 (IORING_SETUP_SUBMIT_ALL);
//  - the opcodes SEND_ZC and SENDMSG_ZC (Linux 6.0), from IORING_REGISTER_PROBE;
//  - IORING_SEND_ZC_REPORT_USAGE (Linux 6.2): a SEND_ZC with it, on an unconnected UDP
//    socket, must fail with EDESTADDRREQ, which the kernel only reaches after it took
//    the flags (EINVAL otherwise) and found the socket able to send zero-copy
//    (EOPNOTSUPP otherwise). Nothing is sent.
// ZEROCOPY_URING_PROBE=fail makes the probe fail (tests of the fallback); nothing else
// reads it.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "exports.h"
#include "uring-ring.h"

namespace zc {

namespace {

// "" when the engine can run, else why not.
std::string Probe() {
  const char* forced = getenv("ZEROCOPY_URING_PROBE");
  if (forced != nullptr && std::strcmp(forced, "fail") == 0) return "the probe was made to fail (ZEROCOPY_URING_PROBE=fail)";

  uring::Ring ring;
  int r = ring.Open(4, 8);
  if (r == -EPERM) return "io_uring_setup was refused (EPERM: a seccomp profile such as Docker's default, or kernel.io_uring_disabled)";
  if (r == -ENOSYS) return "this kernel has no io_uring (ENOSYS)";
  if (r == -EINVAL) return "this kernel's io_uring is older than Linux 5.18 (IORING_SETUP_SUBMIT_ALL refused)";
  if (r < 0) return "io_uring_setup failed (" + ErrorName(-r) + ")";
  if (!(ring.features() & IORING_FEAT_NODROP)) return "this kernel's io_uring may drop completions (no IORING_FEAT_NODROP)";

  // Which opcodes the kernel knows.
  const unsigned ops = 256;
  std::vector<char> probeMemory(sizeof(io_uring_probe) + ops * sizeof(io_uring_probe_op), 0);
  auto* probe = reinterpret_cast<io_uring_probe*>(probeMemory.data());
  r = uring::Register(ring.fd(), IORING_REGISTER_PROBE, probe, ops);
  if (r < 0) return "IORING_REGISTER_PROBE failed (" + ErrorName(-r) + ")";
  for (unsigned op : {unsigned(IORING_OP_SEND_ZC), unsigned(IORING_OP_SENDMSG_ZC)}) {
    if (op > probe->last_op || !(probe->ops[op].flags & IO_URING_OP_SUPPORTED)) {
      return "this kernel's io_uring has no zero-copy send (IORING_OP_SEND_ZC: Linux 6.0)";
    }
  }

  // The flags and the socket type, for real.
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (udp < 0) return "";  // no IPv4 here: the opcodes are there, let the sends tell
  io_uring_sqe* sqe = ring.NextSqe();
  sqe->opcode = IORING_OP_SEND_ZC;
  sqe->fd = udp;
  sqe->ioprio = IORING_SEND_ZC_REPORT_USAGE;
  sqe->msg_flags = MSG_DONTWAIT;
  sqe->user_data = 1;
  r = ring.Submit(1);
  int result = 0;
  if (r >= 0) {
    ring.Drain([&](const io_uring_cqe& cqe) {
      if (cqe.user_data == 1 && !(cqe.flags & IORING_CQE_F_NOTIF)) result = cqe.res;
    });
  }
  close(udp);
  if (r < 0) return "io_uring_enter failed (" + ErrorName(-r) + ")";
  if (result == -EINVAL) return "this kernel cannot report zero-copy usage (IORING_SEND_ZC_REPORT_USAGE: Linux 6.2)";
  if (result == -EOPNOTSUPP) return "this kernel cannot send UDP zero-copy through io_uring (EOPNOTSUPP)";
  if (result != -EDESTADDRREQ) return "an io_uring zero-copy test send failed unexpectedly (" + ErrorName(-result) + ")";
  return "";
}

// uringProbe() -> '' when the io_uring engine can run here, else the reason it cannot.
Napi::Value UringProbe(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Probe());
}

}  // namespace

void ExportUringProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("uringProbe", Napi::Function::New(env, UringProbe, "uringProbe"));
}

}  // namespace zc
