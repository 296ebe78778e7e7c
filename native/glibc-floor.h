// Binds the thread and dynamic-loader calls made directly (not through libuv) to the
// symbol versions of the oldest glibc Node's own Linux binaries run on (2.28). glibc
// 2.34 moved them from libpthread and libdl into libc under new versions, so a binary
// built on a newer system would otherwise need GLIBC_2.34 and not load there
// (scripts/test-package.sh checks the floor). The old versions stay in every glibc.
// Include first in each file that calls them.
#pragma once

#if defined(__GLIBC__) || defined(__linux__)
#if defined(__x86_64__)
#define ZC_GLIBC_BASE "GLIBC_2.2.5"
#define ZC_GLIBC_JOIN_NP "GLIBC_2.3.3"
#elif defined(__aarch64__)
#define ZC_GLIBC_BASE "GLIBC_2.17"
#define ZC_GLIBC_JOIN_NP "GLIBC_2.17"
#endif
#if defined(ZC_GLIBC_BASE)
__asm__(".symver pthread_create,pthread_create@" ZC_GLIBC_BASE);
__asm__(".symver pthread_detach,pthread_detach@" ZC_GLIBC_BASE);
__asm__(".symver pthread_once,pthread_once@" ZC_GLIBC_BASE);
__asm__(".symver pthread_attr_setstacksize,pthread_attr_setstacksize@" ZC_GLIBC_BASE);
__asm__(".symver pthread_tryjoin_np,pthread_tryjoin_np@" ZC_GLIBC_JOIN_NP);
__asm__(".symver pthread_timedjoin_np,pthread_timedjoin_np@" ZC_GLIBC_JOIN_NP);
__asm__(".symver dlopen,dlopen@" ZC_GLIBC_BASE);
__asm__(".symver dladdr,dladdr@" ZC_GLIBC_BASE);
#endif
#endif
