// Which sockets a running relay or upload holds, for the whole process (see
// socket-claims.cc).
#pragma once

namespace zc {

struct EnvState;

// Every claim `owner` still holds ends (its environment is being torn down).
void ReleaseSocketClaimsOf(const EnvState* owner);

}  // namespace zc
