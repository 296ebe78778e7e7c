// The send state machine: one SendChannel per kernel socket, for the socket's whole
// attached life, whatever ZeroCopySocket instances come and go and however the socket
// was named (a Node socket or an fd). It is the one owner of every piece of kernel
// state the sends depend on:
//   - the private fd (a duplicate of the socket; Node's number is never used again),
//   - the socket's MSG_ZEROCOPY id counter (CompletionTracker; lib/socket-registry.ts
//     carries it over when the channel closes and the socket is attached again),
//   - the reactor registration (EPOLLERR for completions, EPOLLOUT while waiting),
//   - its engine (lib/send-ops.ts): MSG_ZEROCOPY + error queue (epoll), or io_uring's
//     SEND_ZC with its own sequence numbers and notification CQEs (lib/uring.ts),
//   - the byte order of the stream: one FIFO queue of requests, and the gate that
//     holds Node's own writes and end() behind ready requests. A relay writing into
//     the socket takes its place in that queue as a RelayTurn (lib/relay-turn.ts).
//
// States (`state`):
//   open       sends are accepted and handed to the kernel in queue order
//   lingering  Node closed its socket: nothing more is sent; what the kernel holds
//              drains behind a FIN until `lingerMs`, then the connection is reset
//   failed     the connection failed (a send error, a reset we made): nothing more is
//              sent; sends the kernel holds settle when it releases them
//   closed     the private fd is closed and every request has settled (final)
// While open, the head of the queue waits for at most one thing (`wait`): room in the
// socket (EAGAIN -> 'writable'), completions (ENOBUFS -> 'completion'), or, on the
// io_uring engine, the end of the tick ('submitted': its call is prepared and goes to
// the kernel with every other socket's, see lib/send-batch.ts); a request not yet
// `ready` waits for Node's earlier bytes, and a file request for its next piece.
//
// Every event goes through handle(): enqueue, Node's write and end, the kernel's
// EPOLLERR/EPOLLOUT, a file piece arriving, a cut (abort, a failed file read), holders
// coming and going (ZeroCopySocket instances, file producers), Node closing its socket,
// and the linger timer. EAGAIN, ENOBUFS, completions and resets are met inside it. No
// event throws out of it: an unexpected error fails the channel instead.
import * as dgram from 'node:dgram'
import * as net from 'node:net'
import * as os from 'node:os'
import { newCounters, type ChannelCounters, type ChannelEvent, type ChannelInit, type ChannelState, type NotificationObserver, type SendWait } from './channel-types'
import { CompletionTracker } from './completions'
import type { EngineName } from './engine'
import { codedError, keepable, sendDetached, socketClosed, systemError, writeAfterEnd } from './errors'
import { native } from './native'
import { followClose, installWriteGate, nodeBuffered, streamError, type GateHooks } from './node-internals'
import * as reactor from './reactor'
import { accountRun, batchableRun, runViews } from './send-batch'
import { epollOps, type SendOps } from './send-ops'
import { SendPolicy } from './send-policy'
import { SettleBarriers } from './settle-barriers'
import { TcpDelivery } from './tcp-delivery'
import { EachRequest, type BytesRequest, type IdOwner, type SendRequest } from './send-requests'
import { uringHub, type UringLink } from './uring'

const { MSG_ZEROCOPY, MSG_DONTWAIT, MSG_NOSIGNAL, EPOLLERR, EPOLLOUT, URING_PREPARED } = native.constants
const { EAGAIN, ENOBUFS, ECONNRESET, EFAULT, ENOMEM, EOPNOTSUPP } = os.constants.errno
const SEND_FLAGS = MSG_DONTWAIT | MSG_NOSIGNAL
const SHUT_WR = 1
// A request with at least this many send calls to go (a sendEach batch, a file window)
// is sent with the socket out of the reactor's epoll set. The kernel wakes every waiter
// on the socket for every completion (sk_error_report runs even when the notification
// merges into a queued one), and with our epoll registered that cost about 0.7 us per
// datagram into the namespace sink, where completions fire inside the send call
// itself. The completions are read right after the burst instead, as a C loop does.
const BURST_MESSAGES = 16
// After we reset a connection the kernel releases its pages at once; a clone still in a
// device queue may hold them a little longer. Past this, the fd is closed abortively.
const RESET_GRACE_MS = 2000

export type { ChannelCounters, ChannelEvent, ChannelInit, ChannelState, SendWait } from './channel-types'

export class SendChannel implements GateHooks, reactor.ReactorClient {
  state: ChannelState = 'open'
  private wait: SendWait = 'none'
  readonly key: string
  readonly inode: number
  /** The private duplicate; -1 while parked (see `origin`). */
  private fd: number
  /**
   * For a socket attached by fd alone: the caller's fd number. While idle the channel
   * parks (closes its duplicate, so it never keeps alive a socket the caller closed)
   * and takes a new duplicate from this number for the next send, checking that it is
   * still the same socket.
   */
  private origin: number | undefined
  readonly datagram: boolean
  private readonly tcp: boolean
  private source: net.Socket | dgram.Socket | undefined
  private stream: net.Socket | undefined
  private readonly tracker: CompletionTracker<IdOwner>
  private readonly queue: SendRequest[] = []
  /** Node's writes and end() held while ready requests are unsent. */
  private readonly held: Array<() => void> = []
  private readonly out = new Float64Array(5)
  /** How sends reach the kernel and releases come back (lib/send-ops.ts). */
  private readonly ops: SendOps
  readonly engine: EngineName
  readonly engineFallback: string | undefined
  /** The socket's MSG_ZEROCOPY counter when attached: io_uring sends never move it. */
  private readonly kernelFirstId: number
  readonly policy: SendPolicy
  lingerMs: number
  /** ZeroCopyOptions.onNotification of the instance attached: told of every release range. */
  onNotification: NotificationObserver | undefined
  readonly counters: ChannelCounters = newCounters()
  /** ZeroCopySocket instances and file producers using the channel. */
  private holders = 0
  /** The fd's seat in the reactor (in its epoll set or not: see BURST_MESSAGES). */
  private readonly watch: reactor.SocketWatch
  private busy = false
  /** TCP: where each send ends in the stream, and how far the peer acknowledged. */
  private readonly delivery = new TcpDelivery()
  private turn = 0
  private socketError: Error | undefined
  private timer: NodeJS.Timeout | undefined
  private uninstallGate: (() => void) | undefined
  /** Stops following Node's close of `source` (lib/node-internals.ts followClose). */
  private unfollow: (() => void) | undefined
  private readonly onClosed: (channel: SendChannel) => void
  private depth = 0
  private readonly deferred: ChannelEvent[] = []
  /** Node closed its socket (no fd can name this socket for us any more). */
  private sourceGone = false
  /** The error Node's stream had when Node closed it (the stream itself is let go then). */
  private nodeError: Error | undefined
  /** Opaque: the ZeroCopySocket currently attached, kept by lib/zerocopy-socket.ts. */
  attachedHandle: unknown
  /** Requests queued and not yet settled (for close barriers). */
  private readonly barriers = new SettleBarriers()
  /** A send() was queued this tick: the pump waits for the tick's end (lib/send-batch.ts). */
  private gathering = false
  /** One request of a batch had its memory refused: send the next one alone. */
  private unbatchedOnce = false
  /** The call prepared for the tick's io_uring_enter, while `wait` is 'submitted'. */
  private prepared: { run: BytesRequest[]; views: Uint8Array[]; zeroCopy: boolean } | undefined

  constructor(init: ChannelInit) {
    this.key = init.key
    this.inode = init.inode
    this.fd = init.fd
    this.datagram = init.datagram
    this.tcp = init.tcp
    this.engine = init.engine
    this.engineFallback = init.engineFallback
    this.kernelFirstId = init.firstId
    this.ops = init.engine === 'io_uring' ? uringHub().link(this) : epollOps
    this.tracker = new CompletionTracker<IdOwner>(init.engine === 'io_uring' ? 0 : init.firstId)
    this.policy = new SendPolicy(init.copiedThreshold)
    this.lingerMs = init.lingerMs
    this.onClosed = init.onClosed
    if (init.noZeroCopy !== undefined) {
      this.policy.disable(init.noZeroCopy)
    } else {
      try {
        native.setZeroCopy(this.fd, true)
      } catch (err) {
        this.policy.disable(`SO_ZEROCOPY is not supported on this socket (${(err as NodeJS.ErrnoException).code})`)
      }
    }
    this.watch = new reactor.SocketWatch(this, init.engine === 'io_uring')
    this.watch.register(this.fd)
    this.origin = init.origin
    this.adoptSource(init.source)
  }

  /** Follows a Node socket's lifetime (and gates a net.Socket's writes), once. */
  adoptSource(source: net.Socket | dgram.Socket | undefined): void {
    if (source === undefined || this.source !== undefined || this.sourceGone || this.state === 'closed') return
    if (this.fd < 0 && this.unpark() !== undefined) return // closed meanwhile: stays closed
    this.origin = undefined // from now on Node's close is followed instead
    this.source = source
    this.unfollow = followClose(source, this.onSourceClose)
    if (source instanceof net.Socket) {
      this.stream = source
      this.uninstallGate = installWriteGate(source, this)
    }
  }

  /** The Node socket this channel follows, if any. */
  get nodeSource(): net.Socket | dgram.Socket | undefined {
    return this.sourceGone ? undefined : this.source
  }

  /** The id the kernel gives this socket's next MSG_ZEROCOPY send. */
  get nextId(): number {
    return this.engine === 'io_uring' ? this.kernelFirstId : this.tracker.nextId
  }

  get unsent(): number {
    let turns = 0 // a relay's turn is no send
    for (const req of this.queue) if (req.kind === 'turn') turns++
    return this.queue.length - turns
  }

  get outstandingIds(): number {
    return this.tracker.outstanding
  }

  /** Resolves once every request queued so far (by any holder) has settled. */
  settledBarrier(): Promise<void> {
    return this.barriers.barrier()
  }

  // ---- the one entry point ------------------------------------------------------

  /** Runs one event; returns true when a Node write or end was taken (gate events). */
  handle(ev: ChannelEvent): boolean {
    // No event meets a call that is prepared and not yet made: the tick's calls go now.
    if (this.wait === 'submitted' && ev.type !== 'submitted' && this.depth === 0) this.ops.flushPrepared?.()
    if (this.depth > 0 && ev.type !== 'nodeWrite' && ev.type !== 'nodeFinal') {
      this.deferred.push(ev) // an event raised while one runs runs right after it
      return false
    }
    this.depth++
    this.turn++
    let taken = false
    try {
      taken = this.step(ev)
      this.pump()
      this.maybeClose()
    } catch (err) {
      // Never into libuv or Node's stream: a bug of ours fails this socket's sends.
      this.fail(err instanceof Error ? err : new Error(String(err)))
      this.maybeClose()
    } finally {
      this.depth--
    }
    if (this.depth === 0 && this.deferred.length > 0) this.handle(this.deferred.shift()!)
    return taken
  }

  private step(ev: ChannelEvent): boolean {
    switch (ev.type) {
      case 'enqueue':
        this.enqueue(ev.req)
        return false
      case 'nodeWrite':
        return this.nodeWrite(ev.chunk, ev.pass, ev.cb)
      case 'nodeFinal':
        return this.nodeFinal(ev.pass)
      case 'kernel':
        this.kernelEvents(ev.events)
        return false
      case 'sourceReady':
        return false // the pump picks the new piece up
      case 'submitted':
        this.concludePrepared(ev.r)
        return false
      case 'cut':
        this.cut(ev.req, ev.err)
        return false
      case 'hold':
        this.holders++
        return false
      case 'release':
        this.holders--
        return false
      case 'sourceClosed':
        this.sourceGone = true
        this.sourceClosed()
        this.dropSource()
        return false
      case 'lingerExpired':
        this.timer = undefined
        if (this.state === 'lingering') {
          this.resetConnection(
            codedError(
              'ERR_ZEROCOPY_ABORTED',
              `The socket closed with zero-copy sends still in flight; after ${this.lingerMs} ms the connection was reset`,
            ),
          )
        } else {
          this.closeFd(this.failure()) // a reset we made has still not given every page back
        }
        return false
    }
  }

  // GateHooks and ReactorClient: Node's and the kernel's events enter here.
  onWrite(chunk: unknown, pass: () => void, cb: (err?: Error | null) => void): boolean {
    return this.handle({ type: 'nodeWrite', chunk, pass, cb })
  }
  onFinal(pass: () => void): boolean {
    return this.handle({ type: 'nodeFinal', pass })
  }
  onEvents(events: number): void {
    this.handle({ type: 'kernel', events })
  }
  onSubmitted(r: number): void {
    this.handle({ type: 'submitted', r })
  }
  private readonly onSourceClose = (): void => {
    this.handle({ type: 'sourceClosed' })
  }

  // ---- transitions --------------------------------------------------------------

  private enqueue(req: SendRequest): void {
    const refusal = this.refusal() ?? (this.fd < 0 ? this.unpark() : undefined)
    if (refusal !== undefined) {
      req.cut(refusal)
      req.settle(refusal)
      return
    }
    req.engine = this.engine
    // A relay's turn (lib/relay-turn.ts) is no send: close() does not wait for it.
    if (req.kind !== 'turn') {
      this.barriers.queued(req)
      this.counters.sends++
    }
    // Node's own buffered bytes go first: a marker behind them makes this request
    // ready when Node hands it to _write (every earlier chunk is in the kernel then).
    // Ready requests always form a prefix of the queue.
    const stream = this.stream
    // A relay's turn may come with its own marker, already in Node's stream.
    if (stream === undefined) req.marker = undefined
    const behindNode = req.marker !== undefined || (stream !== undefined && !req.afterNode && nodeBuffered(stream) > 0)
    const last = this.queue[this.queue.length - 1]
    req.ready = !behindNode && (last === undefined || last.ready)
    if (behindNode && req.marker === undefined) {
      req.marker = Buffer.alloc(0)
      stream!.write(req.marker)
    }
    this.queue.push(req)
    this.updateBusy()
    // Single sends made in this tick go to the kernel together, at its end.
    // On io_uring those of every socket do, in one io_uring_enter (lib/send-batch.ts).
    if (req.kind === 'bytes' && !this.gathering) {
      this.gathering = true
      const job = (): void => {
        this.gathering = false
        this.handle({ type: 'sourceReady', req })
      }
      if (this.ops.gather !== undefined) this.ops.gather(job)
      else queueMicrotask(job)
    }
  }

  /** Why a new request cannot be taken, if it cannot. */
  private refusal(): Error | undefined {
    if (this.state !== 'open') return this.socketError ?? this.streamFailure() ?? socketClosed()
    if (this.stream?.destroyed) return streamError(this.stream) ?? socketClosed()
    if (this.stream?.writableEnded) return writeAfterEnd()
    return undefined
  }

  private nodeWrite(chunk: unknown, pass: () => void, cb: (err?: Error | null) => void): boolean {
    if (chunk instanceof Buffer && chunk.length === 0) {
      const at = this.queue.findIndex((r) => r.marker === chunk)
      if (at >= 0) {
        // Node's earlier bytes are all in the kernel: this request may go, and so may
        // the ones queued behind it without a marker of their own.
        this.queue[at]!.marker = undefined
        for (let i = at; i < this.queue.length && this.queue[i]!.marker === undefined; i++) this.queue[i]!.ready = true
        cb()
        return true // handle() pumps next
      }
    }
    if (this.state === 'open' && this.hasReadyUnsent()) {
      this.held.push(pass)
      return true
    }
    this.delivery.forget() // Node's bytes enter the stream
    return false
  }

  private nodeFinal(pass: () => void): boolean {
    if (this.state === 'open' && this.queue.length > 0) {
      this.held.push(pass)
      return true
    }
    return false
  }

  private kernelEvents(events: number): void {
    if (this.state === 'closed') return
    if (events & EPOLLERR) this.drain()
    if (events & EPOLLOUT && this.wait === 'writable') {
      this.wait = 'none'
      this.watch.wantRoom(this.fd, false)
    }
  }

  /**
   * A request stops short (its AbortSignal, a file that could not be read): it leaves
   * the queue and rejects once the kernel released what it had. If part of it is
   * already in a stream, the peer holds a cut message: the connection is reset.
   */
  private cut(req: SendRequest, err: Error): void {
    // Completions already in: a request they settle was delivered, and the cut is too late.
    if (req.handedOver && this.state !== 'closed') this.drain()
    if (req.settled) return
    const at = this.queue.indexOf(req)
    if (at >= 0) this.removeAt(at)
    req.cut(err)
    if (req.sent > 0 && !this.datagram && this.state !== 'closed') return this.resetConnection(err)
    this.maybeSettle(req)
  }

  /** Takes a request out of the queue; one behind it inherits its wait for a marker. */
  private removeAt(at: number): void {
    const [req] = this.queue.splice(at, 1)
    const next = this.queue[at]
    if (req!.marker !== undefined && next !== undefined && !next.ready && next.marker === undefined) next.marker = req!.marker
    if (!this.hasReadyUnsent()) this.releaseHeld()
    this.updateBusy()
  }

  private sourceClosed(): void {
    if (this.state === 'closed') return
    this.uninstallGate?.()
    this.uninstallGate = undefined
    const err = this.socketError ?? streamError(this.stream) ?? socketClosed('The socket was closed before this send went out')
    this.cutQueue(err)
    if (this.state === 'open') this.state = 'lingering'
    if (this.tracker.outstanding === 0) return
    // As close(2) would: the queued bytes still go, followed by a FIN.
    if (!this.datagram) {
      try {
        native.shutdownSocket(this.fd, SHUT_WR)
      } catch {
        // not connected any more: the kernel is dropping the queue anyway
      }
    }
    this.drain()
    if (this.tracker.outstanding > 0 && Number.isFinite(this.lingerMs) && this.timer === undefined) {
      this.timer = setTimeout(() => this.handle({ type: 'lingerExpired' }), this.lingerMs)
    }
  }

  /**
   * Node closed its socket: what may still linger here (sends the kernel holds) needs
   * the socket's error, not the socket, nor the request and response an application
   * hung on it.
   */
  private dropSource(): void {
    this.nodeError = keepable(streamError(this.stream))
    this.unfollow?.()
    this.unfollow = undefined
    this.uninstallGate?.()
    this.uninstallGate = undefined
    this.source = undefined
    this.stream = undefined
  }

  /** Node's stream's error (kept when Node closed it), if any. */
  private streamFailure(): Error | undefined {
    return this.stream === undefined ? this.nodeError : streamError(this.stream)
  }

  /** The connection failed: nothing more is sent; what the kernel holds settles on release. */
  private fail(err: Error): void {
    if (this.state === 'closed') return
    this.socketError ??= keepable(err)
    this.state = 'failed'
    this.cutQueue(err)
  }

  private cutQueue(err: Error): void {
    for (const req of this.queue.splice(0)) {
      req.cut(err)
      this.maybeSettle(req)
    }
    if (this.wait === 'writable') this.watch.wantRoom(this.fd, false)
    this.wait = 'none'
    this.releaseHeld()
    this.updateBusy()
  }

  /**
   * Resets the connection now (RST; the kernel purges its queues and releases every
   * page it held, whatever other fds refer to the socket) and fails it with `err`.
   */
  private resetConnection(err: Error, cause?: SendRequest): void {
    if (this.state === 'closed') return
    this.drain() // sends already acknowledged settle as delivered first
    this.fail(err)
    this.socketError = keepable(err)
    // What the kernel still holds is dropped by this reset: that is why those sends fail
    // (the request that caused it keeps its own reason).
    for (const owner of this.tracker.pendingOwners()) if (owner.request !== cause) owner.request.error = err
    if (this.stream !== undefined && !this.stream.destroyed) this.stream.destroy()
    if (this.datagram || native.disconnect(this.fd) < 0) return this.closeFd(err)
    this.delivery.stale()
    this.drain()
    if (this.tracker.outstanding > 0 && this.timer === undefined) {
      this.timer = setTimeout(() => this.handle({ type: 'lingerExpired' }), RESET_GRACE_MS)
    }
  }

  private maybeClose(): void {
    if (this.state === 'closed' || this.queue.length > 0 || this.tracker.outstanding > 0) return
    if (this.state === 'open' && this.holders > 0) return this.park()
    this.closeFd(undefined)
  }

  /** Idle, attached by fd alone: let go of the duplicate until the next send. */
  private park(): void {
    if (this.origin === undefined || this.fd < 0 || this.barriers.size > 0) return
    this.watch.unregister(this.fd)
    native.closeFd(this.fd)
    this.fd = -1
    this.delivery.forget()
  }

  /** A new duplicate from the caller's fd number; an error when that is no longer our socket. */
  private unpark(): Error | undefined {
    let fd = -1
    try {
      fd = native.dupFd(this.origin!)
      if (native.socketIdentity(fd).key === this.key) {
        this.fd = fd
        this.watch.register(fd)
        return undefined
      }
    } catch {
      // EBADF, ENOTSOCK: the caller closed it
    }
    if (fd >= 0) native.closeFd(fd)
    const err = socketClosed(`The socket behind fd ${this.origin} was closed`)
    this.socketError = err
    this.closeFd(undefined)
    return err
  }

  /** Closes the private fd; with `abort`, abortively, rejecting whatever was still out. */
  private closeFd(abort: Error | undefined): void {
    if (this.state === 'closed') return
    this.cutQueue(abort ?? this.socketError ?? socketClosed())
    this.state = 'closed'
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.fd >= 0) {
      this.watch.unregister(this.fd)
      if (abort !== undefined) native.abortiveClose(this.fd)
      else native.closeFd(this.fd)
    }
    // After close the kernel holds no page of ours any more.
    this.tracker.releaseAll((owner) => {
      owner.request.pendingIds = 0
      owner.idReleased()
      const req = owner.request
      if (!req.settled) this.barriers.settled(req, () => req.settle(abort ?? this.failure()))
    })
    this.uninstallGate?.()
    this.uninstallGate = undefined
    this.unfollow?.()
    this.unfollow = undefined
    if (this.engine === 'io_uring') (this.ops as UringLink).close()
    this.releaseHeld()
    this.updateBusy()
    // The conclusion itself leaves the registry, whoever still holds the channel and
    // whether or not Node closed its socket yet: no later event (a listener that may be
    // gone by then) has to remember it. Instances still holding it answer with the
    // socket's error; the registry finds it again only through a WeakRef.
    this.onClosed(this)
  }

  /**
   * Whether a closed channel still answers for its socket: an instance holds it, and the
   * socket it follows (if any) is not known closed. @internal
   */
  get answering(): boolean {
    return this.state === 'closed' && this.holders > 0 && !this.sourceGone
  }

  /** The Node socket this channel followed, closed or not (for the registry's checks). @internal */
  get followed(): net.Socket | dgram.Socket | undefined {
    return this.source
  }

  // ---- sending ------------------------------------------------------------------

  private pump(): void {
    if (this.state !== 'open' || this.gathering) return
    if (!this.ops.completionsOnSocket) {
      // io_uring: releases come as CQEs, not as wake-ups of the socket; those met while
      // sending are read right after.
      for (;;) {
        this.sendQueued()
        if (!(this.ops as UringLink).pending || (this.state as ChannelState) === 'closed') return
        if (!(this.drain() > 0 && this.canSend())) return
      }
    }
    const head = this.queue[0]
    if (this.watch.watched && head !== undefined && head.ready && head.callsLeft() >= BURST_MESSAGES) this.watch.set(this.fd, false, false)
    for (;;) {
      this.sendQueued() // may fail or close the channel
      if (this.watch.watched || (this.state as ChannelState) === 'closed') return
      // After a burst: read what completed meanwhile, go on if that unblocked sending,
      // else watch again (an edge-triggered add reports what is already pending).
      if (this.drain() > 0 && this.canSend()) continue
      this.watch.set(this.fd, true, this.wait === 'writable')
      return
    }
  }

  private canSend(): boolean {
    const head = this.queue[0]
    return this.state === 'open' && this.wait === 'none' && head !== undefined && head.ready && !head.waitingForSource()
  }

  /** Ready requests form a prefix of the queue, so the head says it all. */
  private hasReadyUnsent(): boolean {
    return this.queue.length > 0 && this.queue[0]!.ready
  }

  /** Hands queued requests to the kernel, in order, until one has to wait. */
  private sendQueued(): void {
    while (this.state === 'open' && this.wait === 'none') {
      const req = this.queue[0]
      if (req === undefined || !req.ready) return
      if (this.stream?.destroyed && !req.finished(this.datagram)) {
        // Node destroyed its socket (a relay that failed destroys it before its turn
        // ends): nothing more goes, as no send is taken on a destroyed socket.
        this.cutQueue(streamError(this.stream) ?? socketClosed('The socket was closed before this send went out'))
        return
      }
      if (req.finished(this.datagram)) {
        this.handOver(req)
        continue
      }
      req.atHead()
      if (req.waitingForSource()) return
      const zeroCopy = this.policy.zeroCopyFor(req)
      if (zeroCopy && this.tcp) this.delivery.beforeSend(this.fd)
      const owner = req.idOwner()
      const flags = SEND_FLAGS | (zeroCopy ? MSG_ZEROCOPY : 0)
      // At the tick's end on io_uring even one send() is a run: it is prepared, and goes
      // to the kernel with the other sockets' (lib/send-batch.ts).
      const deferring = this.ops.deferring === true
      const run = this.unbatchedOnce ? undefined : batchableRun(this.queue, this.policy, zeroCopy, this.datagram, deferring ? 1 : 2)
      this.unbatchedOnce = false
      const views = run === undefined ? undefined : runViews(run, this.datagram)
      let r: number
      try {
        if (views === undefined) r = req.sendNext(this.ops, this.fd, flags, this.datagram, this.out)
        else if (!deferring) r = this.ops.sendEach(this.fd, views, 0, 0, flags, this.datagram, this.out)
        else if ((r = this.ops.prepareEach!(this.fd, views, flags, this.datagram, this.out)) === URING_PREPARED) {
          this.prepared = { run: run!, views, zeroCopy }
          this.wait = 'submitted'
          return
        }
      } catch (err) {
        if (run !== undefined) this.unbatchedOnce = true // find out which one, alone
        else this.refuse(req, err as Error) // its memory was detached while it waited
        continue
      }
      if (!this.afterCall(req, owner, run, views, zeroCopy, r)) return
    }
  }

  /** The tick's io_uring_enter made the prepared call: its result, as if it had been made now. */
  private concludePrepared(r: number): void {
    const p = this.prepared
    if (p === undefined || this.wait !== 'submitted') return
    this.prepared = undefined
    this.wait = 'none'
    this.afterCall(p.run[0]!, p.run[0]!, p.run, p.views, p.zeroCopy, r)
  }

  /**
   * What a send call returned (r; bytes and calls in `out`) moves the head request, or a
   * run of single sends, on. Returns whether to send on now.
   */
  private afterCall(req: SendRequest, owner: IdOwner, run: BytesRequest[] | undefined, views: Uint8Array[] | undefined, zeroCopy: boolean, r: number): boolean {
    if (run !== undefined && r >= 0) {
      let moved = 0
      // Accounting may let Node's held writes go, which may pump again: count here.
      accountRun(run, views!, this.datagram, this.out, (q, bytes) => {
        if (moved++ === 0) {
          if (run.length > 1) this.counters.sameTickBatches++
          if (zeroCopy) this.counters.registeredSends += this.ops.lastRegistered
        }
        this.account(q, q, bytes, 1, zeroCopy)
      })
      if (moved > 0) return true // accounted request by request
    }
    // A batch that only skipped empty stream writes (r >= 0, no call) still moved on.
    if (run === undefined && (req.kind === 'each' ? r >= 0 : this.out[1]! > 0)) {
      if (zeroCopy) this.counters.registeredSends += this.ops.lastRegistered
      this.account(req, owner, this.out[0]!, this.out[1]!, zeroCopy)
      return true
    }
    if (r === -EAGAIN) {
      this.counters.eagain++
      this.wait = 'writable'
      try {
        this.watch.wantRoom(this.fd, true)
      } catch (err) {
        this.fail(err as Error) // no epoll room to wait in (max_user_watches): never hang
      }
      return false
    }
    // io_uring: ENOMEM when pinned pages in flight reach RLIMIT_MEMLOCK (non-root).
    if (r === -ENOBUFS || (r === -ENOMEM && zeroCopy && this.engine === 'io_uring')) return this.enobufs(req)
    if (r === -EOPNOTSUPP && zeroCopy && this.engine === 'io_uring') {
      this.policy.disable('io_uring cannot send this socket zero-copy (EOPNOTSUPP)')
      return true
    }
    this.sendFailed(req, -r)
    return true
  }

  private account(req: SendRequest, owner: IdOwner, bytes: number, calls: number, zeroCopy: boolean): void {
    req.calls += calls
    if (zeroCopy) {
      this.ops.takeIds(this.tracker, owner, calls)
      owner.idsTaken(calls)
      req.pendingIds += calls
      req.zcBytes += bytes
      this.counters.zeroCopyCalls += calls
      this.counters.zeroCopyBytes += bytes
    } else {
      req.copyBytes += bytes
      this.counters.copyCalls += calls
      this.counters.copyBytes += bytes
      if (!req.copy && req.fallback === undefined) req.fallback = this.policy.fallbackReason
    }
    this.delivery.sent(bytes)
    req.advance(bytes, calls, this.datagram)
    if (req.finished(this.datagram)) this.handOver(req)
  }

  /**
   * ENOBUFS: option memory is full of unread notifications or in-flight sends. Reads
   * completions and retries; with none to read, waits for the next; with nothing in
   * flight at all, this request goes as a copy. Returns whether to go on now.
   */
  private enobufs(req: SendRequest): boolean {
    this.counters.enobufs++
    if (this.drain() > 0) return true
    if (this.tracker.outstanding > 0) {
      this.wait = 'completion'
      return false
    }
    req.fallback = 'ENOBUFS with no zero-copy send in flight (net.core.optmem_max too small?)'
    return true
  }

  /**
   * The request's memory was refused (detached while queued): it rejects alone with
   * ERR_INVALID_STATE. On a stream where part of it went, the peer holds a cut message:
   * the connection is reset, and the sends after it fail with the reset's own reason.
   */
  private refuse(req: SendRequest, thrown: Error): void {
    const total = (req as { total?: number }).total
    const detached = (thrown as NodeJS.ErrnoException).code === 'ERR_INVALID_STATE' && total !== undefined
    const err = detached ? sendDetached(req.sent, total, thrown) : thrown
    // A sendEach batch says how many of its messages went, as for a refused datagram.
    if (req instanceof EachRequest) Object.assign(err, { sent: req.messagesSent })
    this.removeAt(0)
    req.cut(err)
    this.maybeSettle(req)
    if (req.sent === 0 || this.datagram) return
    const where = total === undefined ? `${req.sent} bytes` : `${req.sent} of its ${total} bytes`
    const why = detached ? 'its ArrayBuffer was detached' : err.message
    this.resetConnection(
      codedError(
        'ERR_ZEROCOPY_ABORTED',
        `The connection was reset: a send on it stopped after ${where} (${why}), and the peer must not take a cut message for a whole one`,
        err,
      ),
      req,
    )
  }

  private sendFailed(req: SendRequest, errno: number): void {
    const err = systemError(errno, req.kind === 'each' && this.datagram ? 'sendmmsg' : 'sendmsg')
    if (this.datagram) {
      // A datagram fails alone (EMSGSIZE, or ECONNREFUSED from an earlier ICMP error);
      // the socket and the requests behind it go on. A batch stops there and rejects
      // once the datagrams it already sent are released.
      if (req instanceof EachRequest) Object.assign(err, { sent: req.messagesSent })
      this.removeAt(0)
      req.cut(err)
      this.maybeSettle(req)
      return
    }
    if (errno === EFAULT && req.kind === 'file') {
      // The file shrank under the mapping: the peer must not take a cut body for a whole one.
      return this.resetConnection(
        codedError('ERR_ZEROCOPY_FILE_TRUNCATED', 'The file was truncated while sendFileZeroCopy was sending it: the kernel found no page there (EFAULT)', err),
      )
    }
    this.fail(err)
  }

  /** Every byte of `req` is in the kernel (or it was cut): it settles on release. */
  private handOver(req: SendRequest): void {
    this.queue.shift()
    req.handedOver = true
    if (req.zcBytes > 0 && this.tcp) req.endOffset = this.delivery.end
    // An fd's owner may write to it between our sends, and a relay's turn wrote into the
    // stream: read the offset again next time.
    if ((this.queue.length === 0 && this.stream === undefined) || req.kind === 'turn') this.delivery.forget()
    this.maybeSettle(req)
    if (!this.hasReadyUnsent()) this.releaseHeld()
  }

  private releaseHeld(): void {
    if (this.held.length === 0) return // the common case, on every send
    this.delivery.forget()
    for (const call of this.held.splice(0)) call()
  }

  // ---- completions --------------------------------------------------------------

  /** Reads the whole error queue; returns the notifications read. */
  private drain(): number {
    this.delivery.stale()
    const read = this.ops.drain(this.fd, this.onCompletion)
    if (read > 0 && this.wait === 'completion') this.wait = 'none'
    return read
  }

  private readonly onCompletion = (lo: number, hi: number, copied: boolean): void => {
    this.counters.notifications++
    this.policy.completed(this.tracker.complete(lo, hi, copied, this.onIdComplete), copied)
    if (this.onNotification === undefined) return
    try {
      this.onNotification(lo, hi, copied)
    } catch (err) {
      // The caller's observer must not break the bookkeeping of the notifications after it.
      process.emitWarning(`zerocopy: an onNotification observer threw: ${String(err)}`, 'ZeroCopyWarning')
    }
  }

  private readonly onIdComplete = (owner: IdOwner, copied: boolean): void => {
    const req = owner.request
    req.pendingIds--
    owner.idReleased()
    this.counters.completedIds++
    if (copied) {
      req.kernelCopied = true
      this.counters.copiedIds++
    }
    this.maybeSettle(req)
  }

  private maybeSettle(req: SendRequest): void {
    if (req.settled || !req.handedOver || req.pendingIds > 0) return
    let err = req.error
    if (err === undefined && req.zcBytes > 0 && this.tcp && !this.delivered(req)) err = this.failure()
    this.barriers.settled(req, () => req.settle(err)) // its holder is told, then close barriers it held up resolve
    this.updateBusy()
  }

  /** A TCP send's pages came back: by an ACK, or purged unsent by a dead connection (lib/tcp-delivery.ts). */
  private delivered(req: SendRequest): boolean {
    const fd = this.state === 'closed' ? -1 : this.fd
    return this.delivery.delivered(fd, req.endOffset, this.turn, () => this.socketError === undefined && this.streamFailure() === undefined)
  }

  private failure(): Error {
    return this.socketError ?? this.streamFailure() ?? systemError(ECONNRESET, 'sendmsg')
  }

  private updateBusy(): void {
    const busy = this.state !== 'closed' && (this.queue.length > 0 || this.tracker.outstanding > 0)
    if (busy !== this.busy) {
      this.busy = busy
      reactor.setBusy(busy)
    }
  }
}
