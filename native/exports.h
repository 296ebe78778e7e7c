// One function per native source file registers what that file implements.
#pragma once

#include <napi.h>

namespace zc {

void ExportEnv(Napi::Env env, Napi::Object exports);       // env.cc (first: the others use it)
void ExportSplice(Napi::Env env, Napi::Object exports);     // splice.cc
void ExportPipes(Napi::Env env, Napi::Object exports);      // pipes.cc
void ExportMemory(Napi::Env env, Napi::Object exports);     // memory.cc
void ExportSocket(Napi::Env env, Napi::Object exports);     // socket.cc
void ExportSockopt(Napi::Env env, Napi::Object exports);    // sockopt.cc
void ExportSocketClaims(Napi::Env env, Napi::Object exports); // socket-claims.cc
void ExportErrors(Napi::Env env, Napi::Object exports);     // errors.cc
void ExportFileOpen(Napi::Env env, Napi::Object exports);   // file-open.cc
void ExportReactor(Napi::Env env, Napi::Object exports);    // reactor.cc
void ExportMapping(Napi::Env env, Napi::Object exports);    // mapping.cc
void ExportUring(Napi::Env env, Napi::Object exports);      // uring.cc
void ExportUringProbe(Napi::Env env, Napi::Object exports); // uring-probe.cc
void ExportRelay(Napi::Env env, Napi::Object exports);      // relay.cc
void ExportUploadOpen(Napi::Env env, Napi::Object exports); // upload-open.cc
void ExportConstants(Napi::Env env, Napi::Object exports);  // addon.cc

}  // namespace zc
