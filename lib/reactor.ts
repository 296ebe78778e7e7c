// The process-wide reactor (native/reactor.cc): one epoll instance that libuv
// watches, into which every attached socket's private fd is registered. It wakes the
// owning ZeroCopySocket when completions arrive or, on request, when there is room to
// write. It keeps the process alive only while some socket has work outstanding.
import { native, type NativeReactor } from './native'

/** What a registered socket does with its events. */
export interface ReactorClient {
  /** Called with the epoll bits (EPOLLERR, EPOLLOUT, EPOLLHUP) that fired. */
  onEvents(events: number): void
}

let reactor: NativeReactor | undefined
const clients = new Map<number, ReactorClient>()
let nextToken = 1
let busy = 0

function dispatch(events: Uint32Array, count: number): void {
  for (let i = 0; i < count; i++) {
    const client = clients.get(events[2 * i]!)
    if (client === undefined) continue
    try {
      client.onEvents(events[2 * i + 1]!)
    } catch (err) {
      // A client handles its own failures (SendChannel.handle never throws); should one
      // escape, it must not end the process from inside libuv's poll phase, nor stop
      // the other clients' events.
      process.emitWarning(`zerocopy: a socket's event handler threw: ${String(err)}`, 'ZeroCopyWarning')
    }
  }
}

function instance(): NativeReactor {
  reactor ??= new native.Reactor(dispatch)
  return reactor
}

/**
 * Registers an fd the caller owns; returns the token that names it. Until unregister,
 * the environment also owns it: a worker terminated with the socket attached closes it
 * natively (native/env.cc), as JS never runs again to do so; abortively if bytes are
 * queued and `uringSocket` (it sends through io_uring, where SO_ZEROCOPY is no sign).
 * Without `watch` the fd stays out of the epoll set until setWatched() puts it in.
 */
export function register(fd: number, client: ReactorClient, uringSocket = false, watch = true): number {
  const token = newToken()
  if (watch) instance().add(fd, token, false)
  native.adoptFd(fd, uringSocket)
  clients.set(token, client)
  return token
}

/**
 * Watches an fd that native code owns for EPOLLIN (the io_uring engine's eventfd),
 * edge-triggered: `client` is told once per batch of new events.
 */
export function watchReadable(fd: number, client: ReactorClient): void {
  const token = newToken()
  instance().add(fd, token, false, true)
  clients.set(token, client)
}

function newToken(): number {
  const token = nextToken
  nextToken = nextToken >= 0xfffffffe ? 1 : nextToken + 1
  return token
}

/** Asks for (or stops asking for) one EPOLLOUT wake-up when `fd` has room. */
export function wantWritable(fd: number, token: number, writable: boolean): void {
  instance().wantWritable(fd, token, writable)
}

/**
 * Takes a registered fd out of the epoll set for a while, or puts it back (with
 * EPOLLOUT interest if `writable`). While out, the kernel's completion wake-ups skip
 * it, which is what a sender in a tight loop wants (see ZeroCopySocket.pump). Putting it
 * back reports whatever is already pending: nothing is missed in between.
 */
export function setWatched(fd: number, token: number, watched: boolean, writable: boolean): void {
  if (watched) instance().add(fd, token, writable)
  else instance().remove(fd)
}

/** Unregisters; call before closing the fd. */
export function unregister(fd: number, token: number): void {
  clients.delete(token)
  native.releaseFd(fd)
  instance().remove(fd)
}

/**
 * One socket's seat in the reactor: its token, and whether its fd is in the epoll set.
 * An epoll-engine socket sits there from register() on (its releases wake it), but for
 * the bursts that take it out a while (see SendChannel.pump). An io_uring socket sits
 * there only while it waits for room: its releases come as CQEs, and every skb the
 * kernel frees wakes each waiter on the socket, an epoll entry included (measured in C
 * on the UDP sink: one such waiter costs about 3% of the send rate).
 */
export class SocketWatch {
  private token = 0
  /** The fd is in the epoll set. */
  watched = false

  constructor(
    private readonly client: ReactorClient,
    private readonly uring: boolean,
  ) {}

  register(fd: number): void {
    this.token = register(fd, this.client, this.uring, !this.uring)
    this.watched = !this.uring
  }

  unregister(fd: number): void {
    unregister(fd, this.token)
  }

  /** Asks for one wake-up when the socket has room, or stops asking. */
  wantRoom(fd: number, on: boolean): void {
    if (this.uring) this.set(fd, on, on)
    else if (this.watched) wantWritable(fd, this.token, on)
  }

  /** Puts the fd in the epoll set (with EPOLLOUT interest if `writable`), or takes it out. */
  set(fd: number, watched: boolean, writable: boolean): void {
    setWatched(fd, this.token, watched, writable)
    this.watched = watched
  }
}

/** A socket has work outstanding (the process must not exit), or no longer has. */
export function setBusy(isBusy: boolean): void {
  const before = busy
  busy += isBusy ? 1 : -1
  if (before === 0 && busy > 0) instance().ref()
  else if (before > 0 && busy === 0) instance().unref()
}
