// Keeps the binary loadable with the C++ runtime of the oldest systems Node runs on.
//
// Node's Linux binaries need glibc 2.28 and GCC 8's libstdc++ (GLIBCXX_3.4.25, as on
// RHEL 8); Debian 11 and Ubuntu 20.04 have GCC 10's (3.4.28). The headers of GCC 11 and
// later call std::__throw_bad_array_new_length() from std::allocator<T>::allocate, a
// function only libstdc++ 3.4.29 exports: one such call in the binary and it does not
// load there. Defined here, hidden, every call binds to this copy instead. It does what
// libstdc++'s does. scripts/test-package.sh checks the symbol versions of the prebuild.
//
// This file must not include a header that declares the function (bits/functexcept.h,
// pulled in by most of the standard library): only <new>.
#include <new>

namespace std {
__attribute__((visibility("hidden"), noreturn)) void __throw_bad_array_new_length();
void __throw_bad_array_new_length() { throw bad_array_new_length(); }
}  // namespace std

// libstdc++'s headers from GCC 11 on read glibc's __libc_single_threaded (GLIBC_2.32) in
// std::shared_ptr's reference counting, to skip atomics in a process with one thread.
// Ours, hidden and always 0 ("not single-threaded"), keeps the atomics and the floor.
extern "C" {
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}
