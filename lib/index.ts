// The public API. Zero-copy sends live in zerocopy-socket.ts (on top of completions.ts
// and reactor.ts), raw syscalls in raw.ts, batched datagram reads in receive.ts,
// page-aligned memory in memory.ts, the addon loader in native.ts.
export {
  constants,
  dup,
  getPipeSize,
  getSocketOption,
  inputQueueBytes,
  outputQueueBytes,
  pipe,
  readErrorQueue,
  recv,
  send,
  sendfile,
  sendfileAsync,
  setPipeSize,
  setSocketOption,
  setZeroCopy,
  splice,
  spliceAsync,
  tee,
  teeAsync,
  vmsplice,
} from './raw'
export { allocPageAligned, pageOffsetOf, pageSize } from './memory'
export { allocRegistered } from './registered-memory'
export { receiveDatagrams, setReceiveBuffer } from './receive'
export { sendFileZeroCopy } from './send-file'
export type { FileSource, SendFileOptions, SendFileResult } from './send-file'
export { ZeroCopySocket, sendZeroCopy } from './zerocopy-socket'
export type { SendOptions, SendResult, ZeroCopyOptions, ZeroCopyStats } from './zerocopy-socket'
export type { ByteView, ErrorQueueEntry, Length, Offset, PipeEnds, PipeOptions } from './raw'
export { relay } from './relay'
export type { RelayEnd, RelayMechanism, RelayOptions, RelayResult } from './relay'
export { relayStats } from './relay-engine'
export type { RelayStats } from './relay-engine'
export { receiveToFile } from './receive-to-file'
export type { FileTarget, ReceiveToFileOptions, ReceiveToFileResult } from './receive-to-file'
