// The public API. Raw syscalls live in raw.ts, page-aligned memory in memory.ts, the
// addon loader in native.ts.
export {
  constants,
  getPipeSize,
  inputQueueBytes,
  outputQueueBytes,
  pipe,
  sendfile,
  sendfileAsync,
  setPipeSize,
  splice,
  spliceAsync,
  tee,
  teeAsync,
  vmsplice,
} from './raw'
export { allocPageAligned, pageOffsetOf, pageSize } from './memory'
export type { ByteView, Length, Offset, PipeEnds, PipeOptions } from './raw'
