// The shapes around the send state machine (lib/send-channel.ts): its states, the
// events it takes, what it is made from, and the counters it keeps.
import type * as dgram from 'node:dgram'
import type * as net from 'node:net'
import type { EngineName } from './engine'
import type { SendChannel } from './send-channel'
import type { SendRequest } from './send-requests'

export type ChannelState = 'open' | 'lingering' | 'failed' | 'closed'
export type SendWait = 'none' | 'writable' | 'completion' | 'submitted'

export type ChannelEvent =
  | { type: 'enqueue'; req: SendRequest }
  | { type: 'nodeWrite'; chunk: unknown; pass: () => void; cb: (err?: Error | null) => void }
  | { type: 'nodeFinal'; pass: () => void }
  | { type: 'kernel'; events: number }
  | { type: 'sourceReady'; req: SendRequest }
  | { type: 'submitted'; r: number }
  | { type: 'cut'; req: SendRequest; err: Error }
  | { type: 'hold' }
  | { type: 'release' }
  | { type: 'sourceClosed' }
  | { type: 'lingerExpired' }

/**
 * Told of each release the kernel reported (ZeroCopyOptions.onNotification): the
 * inclusive id range [first, last] (mod 2^32) and whether the kernel copied.
 */
export type NotificationObserver = (first: number, last: number, copied: boolean) => void

export interface ChannelInit {
  key: string
  inode: number
  /** The private duplicate; the channel owns and closes it. */
  fd: number
  datagram: boolean
  tcp: boolean
  source: net.Socket | dgram.Socket | undefined
  firstId: number
  engine: EngineName
  /** Why not io_uring, when 'auto' chose epoll. */
  engineFallback: string | undefined
  copiedThreshold: number
  lingerMs: number
  /** Why SO_ZEROCOPY must stay off (libuv reads this socket's error queue; epoll engine only), if so. */
  noZeroCopy: string | undefined
  /** The caller's fd number, for a socket attached by fd alone. */
  origin: number | undefined
  /** Called once, when the channel concludes (enters `closed`): the registry forgets it then. */
  onClosed(channel: SendChannel): void
}

/** Counters kept by a channel (ZeroCopySocket.stats adds mode and queue sizes). */
export interface ChannelCounters {
  sends: number
  zeroCopyCalls: number
  copyCalls: number
  notifications: number
  completedIds: number
  copiedIds: number
  zeroCopyBytes: number
  copyBytes: number
  eagain: number
  enobufs: number
  /** Zero-copy send calls made from registered memory (allocRegistered; io_uring). */
  registeredSends: number
  /** Native calls that carried two or more single send()s made in one tick (lib/send-batch.ts). */
  sameTickBatches: number
}

/** Counters at zero (a channel's, or a stream copier's: ZeroCopySocket.stats has one shape). */
export function newCounters(): ChannelCounters {
  return {
    sends: 0,
    zeroCopyCalls: 0,
    copyCalls: 0,
    notifications: 0,
    completedIds: 0,
    copiedIds: 0,
    zeroCopyBytes: 0,
    copyBytes: 0,
    eagain: 0,
    enobufs: 0,
    registeredSends: 0,
    sameTickBatches: 0,
  }
}
