// The io_uring system calls and the few constants this addon needs, without liburing.
//
// glibc has no wrappers for io_uring_setup/enter/register: they go through syscall(2).
// <linux/io_uring.h> from the build machine's kernel headers (linux-libc-dev 6.1 on
// Debian 12) has SEND_ZC and its flags; constants added later are defined here,
// guarded, with the values the kernel's uapi header gives them (they never change).
// Whether the running kernel knows them is the probe's business (uring-probe.cc).
#pragma once

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

// Linux 6.0: IORING_OP_SEND_ZC / IORING_OP_SENDMSG_ZC and notification CQEs.
#ifndef IORING_CQE_F_NOTIF
#define IORING_CQE_F_NOTIF (1U << 3)
#endif
// Linux 6.2: the notification says whether the kernel copied after all.
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

namespace zc::uring {

// Each returns the syscall's result, or -errno.
inline int Setup(unsigned entries, io_uring_params* params) {
  long r = syscall(__NR_io_uring_setup, entries, params);
  return r < 0 ? -errno : static_cast<int>(r);
}

inline int Enter(int ringFd, unsigned toSubmit, unsigned minComplete, unsigned flags) {
  long r = syscall(__NR_io_uring_enter, ringFd, toSubmit, minComplete, flags, nullptr, _NSIG / 8);
  return r < 0 ? -errno : static_cast<int>(r);
}

inline int Register(int ringFd, unsigned opcode, const void* arg, unsigned count) {
  long r = syscall(__NR_io_uring_register, ringFd, opcode, arg, count);
  return r < 0 ? -errno : static_cast<int>(r);
}

}  // namespace zc::uring
