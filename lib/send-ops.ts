// The kernel calls a channel's sends are made of, one implementation per engine
// (lib/engine.ts). The send state machine (lib/send-channel.ts) and the request cursors
// (lib/send-requests.ts) decide what to send, when and with which flags; an engine
// only says how a call reaches the kernel and how its releases come back. Both
// engines' calls are synchronous and answer alike: bytes (or messages) >= 0, or
// -errno (EAGAIN: no room; the channel waits for EPOLLOUT).
//
// Without MSG_ZEROCOPY in `flags` a call is a plain copying sendmsg on either engine.
import type { CompletionTracker } from './completions'
import type { EngineName } from './engine'
import { ErrorQueueReader, type OnCompletion } from './error-queue'
import { native, type ByteView, type NativeMapping } from './native'

export interface SendOps {
  readonly engine: EngineName
  /** One send of `data` (one stream write, or one datagram): bytes, or -errno. */
  send(fd: number, data: ByteView | readonly ByteView[], flags: number): number
  /**
   * Messages [first, ...) each with its own send call, up to 256, as trySendEach
   * (native/socket.cc): messages done, or -errno; out[0] bytes, out[1] calls.
   */
  sendEach(fd: number, views: readonly ByteView[], first: number, offset: number, flags: number, datagram: boolean, out: Float64Array): number
  /**
   * Sends from a file mapping in calls of `chunk` bytes: as many as the engine makes in
   * one go (epoll: one sendmsg; io_uring: a linked chain of up to 64). Bytes, or -errno
   * (EFAULT past a truncated end); out[0] bytes, out[1] calls.
   */
  sendMapped(fd: number, mapping: NativeMapping, offset: number, length: number, chunk: number, flags: number, out: Float64Array): number
  /** The last call's `calls` zero-copy sends each took an id, for `owner`. */
  takeIds<T>(tracker: CompletionTracker<T>, owner: T, calls: number): void
  /** Reads the releases that came in, calling `onCompletion` per id range; returns how many. */
  drain(fd: number, onCompletion: OnCompletion): number
  /** The sockets's completions wake its channel through EPOLLERR on the socket (epoll) or not (io_uring). */
  readonly completionsOnSocket: boolean
  /** Of the last call's zero-copy sends, those made from registered memory (io_uring). */
  readonly lastRegistered: number

  // Sharing one kernel crossing among sockets (io_uring only; lib/send-batch.ts).
  /** Runs `job` (a channel's gathered pump) at the tick's end with every other socket's. */
  gather?(job: () => void): void
  /** Inside such a job: a run's call may be prepared instead of made now. */
  readonly deferring?: boolean
  /**
   * As sendEach (from message 0, offset 0), prepared for the tick's io_uring_enter:
   * returns constants.URING_PREPARED, and the result comes as a 'submitted' event.
   */
  prepareEach?(fd: number, views: readonly ByteView[], flags: number, datagram: boolean, out: Float64Array): number
  /** Makes every prepared call now and concludes them ('submitted' events). */
  flushPrepared?(): void
}

/** MSG_ZEROCOPY + the error queue: ids are the kernel's own per-socket counter. */
export const epollOps: SendOps = {
  engine: 'epoll',
  completionsOnSocket: true,
  lastRegistered: 0,
  send: (fd, data, flags) => native.trySend(fd, data, flags),
  sendEach: (fd, views, first, offset, flags, datagram, out) => native.trySendEach(fd, views, first, offset, flags, datagram, out),
  sendMapped: oneMappedSend,
  takeIds(tracker, owner, calls) {
    for (let i = 0; i < calls; i++) tracker.take(owner)
  },
  drain: (fd, onCompletion) => errq.drain(fd, onCompletion),
}

/** One sendmsg of the mapping's next `chunk` bytes (also io_uring's copies). */
export function oneMappedSend(fd: number, mapping: NativeMapping, offset: number, length: number, chunk: number, flags: number, out: Float64Array): number {
  const r = native.trySendMapped(fd, mapping, offset, Math.min(length, chunk), flags)
  out[0] = r > 0 ? r : 0
  out[1] = r > 0 ? 1 : 0
  return r
}

// One reader serves every channel: a drain runs to its end before the next starts.
const errq = new ErrorQueueReader()
