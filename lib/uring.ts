// The io_uring engine (lib/engine.ts): one ring per environment (native/uring.cc),
// shared by every socket on this engine, and one UringLink per socket channel.
//
// A send goes as SEND_ZC SQEs and returns its results at once (see native/uring.cc);
// each zero-copy call's release comes later as a notification CQE carrying the
// channel's token and the call's sequence number. The ring's eventfd sits in the
// reactor's epoll, so a notification wakes the event loop like any socket event,
// without a thread hop; the hub reaps the CQ, gives each notification to its link, and
// wakes the link's channel (an EPOLLERR event, as error-queue entries do on the epoll
// engine), which then drains its link. Notifications the native side met while it
// collected a send's results are reaped right after that send; those of other
// channels are handed out in a microtask, never inside another channel's event.
//
// The tick's end: the pumps of every channel that gathered single sends this tick run
// in one microtask (gather); each prepares its run and waits, then one flush() hands
// every socket's SQEs to the kernel in one io_uring_enter, and each link tells its
// channel its call's result ('submitted'), in the order they were prepared.
import type { CompletionTracker } from './completions'
import type { OnCompletion } from './error-queue'
import * as os from 'node:os'
import { native, type ByteView, type NativeMapping, type NativeUring } from './native'
import * as reactor from './reactor'
import { oneMappedSend, type SendOps } from './send-ops'

const { MSG_ZEROCOPY, EPOLLERR, URING_PREPARED } = native.constants
const REAP_ENTRIES = 256
const REPORT_WORDS = 6
const { EIO } = os.constants.errno

/** A channel on the ring: woken for releases, and told when its prepared call was made. */
export interface UringClient extends reactor.ReactorClient {
  onSubmitted(r: number): void
}

/** The ring of this environment, made on first use. */
let hub: UringHub | undefined

export function uringHub(): UringHub {
  hub ??= new UringHub()
  return hub
}

/**
 * The fds the environment's ring holds for the environment's life (the ring and its
 * eventfd), if it was made: tests that count fds leave out exactly these. @internal
 */
export function ringFds(): number[] {
  return hub === undefined ? [] : [hub.ring.fd, hub.ring.eventFd]
}

class UringHub implements reactor.ReactorClient {
  readonly ring: NativeUring = new native.Uring()
  private readonly links = new Map<number, UringLink>()
  private nextToken = 1
  private readonly words = new Uint32Array(4 * REAP_ENTRIES)
  private readonly woken = new Set<UringLink>()
  private flushScheduled = false
  /** Pumps gathered for the tick's end, and the links whose call is prepared, in order. */
  private readonly gathered: Array<() => void> = []
  private readonly prepared: UringLink[] = []
  private reports = new Float64Array(REPORT_WORDS * 64)
  /** The gathered pumps are running: their runs are prepared, not made. */
  deferring = false
  /** io_uring_enter calls that made several sockets' prepared calls at once (stats). */
  sharedEnters = 0

  constructor() {
    reactor.watchReadable(this.ring.eventFd, this)
  }

  /** A new link for a channel; `client` is woken (EPOLLERR) when its releases arrive. */
  link(client: UringClient): UringLink {
    const token = this.nextToken
    this.nextToken = this.nextToken >= 0xfffffffe ? 1 : this.nextToken + 1
    const link = new UringLink(this, token, client)
    this.links.set(token, link)
    return link
  }

  /** The channel closed: late notifications for its token are dropped. */
  unlink(link: UringLink): void {
    this.links.delete(link.token)
    this.woken.delete(link)
  }

  gather(job: () => void): void {
    if (this.gathered.push(job) === 1) queueMicrotask(this.endOfTick)
  }

  private readonly endOfTick = (): void => {
    const jobs = this.gathered.splice(0)
    // One socket alone shares nothing: its pump sends at once, as on any other tick.
    if (jobs.length === 1) return jobs[0]!()
    this.deferring = true
    try {
      for (const job of jobs) {
        try {
          job()
        } catch {
          // A channel fails itself and never throws (SendChannel.handle); the others go on.
        }
      }
    } finally {
      this.deferring = false
      while (this.prepared.length > 0) this.flushPrepared()
    }
  }

  /** A link's call was prepared: it is made at the next flushPrepared. */
  preparedBy(link: UringLink): void {
    this.prepared.push(link)
  }

  /**
   * One io_uring_enter for every prepared call; then each link's channel concludes its
   * call. Calls prepared meanwhile (a concluding channel that goes on while the tick's
   * pumps still run) wait for the next flush.
   */
  flushPrepared(): void {
    const links = this.prepared.splice(0)
    if (links.length === 0) return
    if (this.reports.length < REPORT_WORDS * links.length) this.reports = new Float64Array(REPORT_WORDS * links.length * 2)
    const n = this.ring.flush(this.reports)
    if (links.length > 1) this.sharedEnters++
    // Every link holds its report before any channel runs: a channel's conclusion may
    // run code that reaches another link of this flush, which then concludes first.
    for (let i = 0; i < links.length; i++) {
      const w = REPORT_WORDS * i
      // Reports come in the order the calls were prepared; a call missing from them
      // (never expected) was not made.
      const made = i < n && this.reports[w] === links[i]!.token
      links[i]!.madeCall(made ? this.reports.slice(w, w + REPORT_WORDS) : undefined)
    }
    // Releases met while collecting are handed out after every call is concluded.
    this.reap(SHARED)
    for (const link of links) link.conclude()
  }

  /** The eventfd fired: new completions. */
  onEvents(): void {
    this.reap(undefined)
    this.flush()
  }

  /**
   * Moves every completion waiting in the ring to its link. Links other than `caller`
   * are woken: now if no channel is running (caller undefined), else in a microtask.
   */
  reap(caller: UringLink | typeof SHARED | undefined): void {
    for (;;) {
      const n = this.ring.reap(this.words)
      for (let i = 0; i < n; i++) {
        const link = this.links.get(this.words[4 * i]!)
        if (link === undefined) continue // its channel closed meanwhile
        link.released.push(this.words[4 * i + 1]!, this.words[4 * i + 2]!, this.words[4 * i + 3]!)
        if (link !== caller) this.woken.add(link)
      }
      if (n < REAP_ENTRIES) break
    }
    if (caller !== undefined && this.woken.size > 0) this.scheduleFlush()
  }

  /** Wakes `link` (EPOLLERR) in a microtask, to drain releases it could not drain now. */
  wakeLater(link: UringLink): void {
    this.woken.add(link)
    this.scheduleFlush()
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(this.flush)
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    for (const link of this.woken) {
      this.woken.delete(link)
      link.client.onEvents(EPOLLERR)
    }
  }
}

/** reap()'s caller when no one link is: every link with releases is woken in a microtask. */
const SHARED = Symbol('shared flush')

/** One channel's sends through the ring: its token, its sequence numbers, its releases. */
export class UringLink implements SendOps {
  readonly engine = 'io_uring'
  readonly completionsOnSocket = false
  /** Releases reaped and not yet drained: (first, last sequence number, copied 0/1). */
  readonly released: number[] = []
  /** The next SQE's sequence number, and the next of the last call's not yet claimed as ids. */
  private seq = 0
  private unclaimed = 0
  private readonly out = new Float64Array(5)
  lastRegistered = 0

  /** Where the prepared call's bytes and calls go when it is concluded (the channel's out). */
  private preparedOut: Float64Array | undefined
  /** The prepared call's report, between the flush that made it and its conclusion. */
  private report: Float64Array | undefined

  constructor(
    private readonly hub: UringHub,
    readonly token: number,
    readonly client: UringClient,
  ) {}

  gather(job: () => void): void {
    this.hub.gather(job)
  }

  get deferring(): boolean {
    return this.hub.deferring
  }

  prepareEach(fd: number, views: readonly ByteView[], flags: number, datagram: boolean, out: Float64Array): number {
    if (!(flags & MSG_ZEROCOPY) || this.preparedOut !== undefined) return this.sendEach(fd, views, 0, 0, flags, datagram, out)
    const r = this.hub.ring.sendEach(this.token, this.seq, fd, views, 0, 0, flags & ~MSG_ZEROCOPY, datagram, out, true)
    this.sent(out) // takes its sequence numbers (a prepared call reports no bytes and no reaps)
    if (r !== URING_PREPARED) return r // not expected: the ring made it at once
    this.preparedOut = out
    this.hub.preparedBy(this)
    return r
  }

  /** Concludes this link's prepared call now: its report if the flush made it, else the flush. */
  flushPrepared(): void {
    if (this.report !== undefined) this.conclude()
    else this.hub.flushPrepared()
  }

  /** The flush made the prepared call (report: token, r, bytes, calls, SQEs, registered). */
  madeCall(report: Float64Array | undefined): void {
    this.report = report ?? new Float64Array([this.token, -EIO, 0, 0, 0, 0])
  }

  /** Tells the channel its prepared call's result, once. */
  conclude(): void {
    const report = this.report
    const out = this.preparedOut
    if (report === undefined || out === undefined) return
    this.report = undefined
    this.preparedOut = undefined
    out[0] = report[2]!
    out[1] = report[3]!
    this.lastRegistered = report[5]!
    this.client.onSubmitted(report[1]!)
  }

  send(fd: number, data: ByteView | readonly ByteView[], flags: number): number {
    if (!(flags & MSG_ZEROCOPY)) return native.trySend(fd, data, flags)
    const r = this.hub.ring.send(this.token, this.seq, fd, data, flags & ~MSG_ZEROCOPY, this.out)
    this.sent(this.out)
    return r
  }

  sendEach(fd: number, views: readonly ByteView[], first: number, offset: number, flags: number, datagram: boolean, out: Float64Array): number {
    if (!(flags & MSG_ZEROCOPY)) return native.trySendEach(fd, views, first, offset, flags, datagram, out)
    const r = this.hub.ring.sendEach(this.token, this.seq, fd, views, first, offset, flags & ~MSG_ZEROCOPY, datagram, out)
    this.sent(out)
    return r
  }

  sendMapped(fd: number, mapping: NativeMapping, offset: number, length: number, chunk: number, flags: number, out: Float64Array): number {
    if (!(flags & MSG_ZEROCOPY)) return oneMappedSend(fd, mapping, offset, length, chunk, flags, out)
    const r = this.hub.ring.sendMapped(this.token, this.seq, fd, mapping, offset, length, flags & ~MSG_ZEROCOPY, out, chunk)
    this.sent(out)
    return r
  }

  /**
   * Every SQE took a sequence number, failed ones too (their notification, if one
   * comes, matches no owner and is ignored); the calls that sent are the first ones.
   */
  private sent(out: Float64Array): void {
    this.unclaimed = this.seq
    this.seq = (this.seq + out[2]!) >>> 0
    this.lastRegistered = out[4]!
    if (out[3]! > 0) this.hub.reap(this)
  }

  /** The last call's successful sends are its first SQEs: claimed in order (a batch's requests one after another). */
  takeIds<T>(tracker: CompletionTracker<T>, owner: T, calls: number): void {
    for (let i = 0; i < calls; i++) {
      tracker.takeAt(this.unclaimed, owner)
      this.unclaimed = (this.unclaimed + 1) >>> 0
    }
  }

  drain(_fd: number, onCompletion: OnCompletion): number {
    // Releases wait while a call is prepared and not concluded (its ids are not claimed
    // yet), and while the tick's pumps prepare (no user callback runs in that window).
    if (this.preparedOut !== undefined || this.hub.deferring) {
      this.hub.wakeLater(this) // what waits is drained once the tick's calls are concluded
      return 0
    }
    this.hub.reap(this)
    const r = this.released.splice(0)
    for (let i = 0; i < r.length; i += 3) onCompletion(r[i]!, r[i + 1]!, r[i + 2] === 1)
    return r.length / 3
  }

  /** Releases are waiting to be drained. */
  get pending(): boolean {
    return this.released.length > 0
  }

  close(): void {
    this.hub.unlink(this)
  }
}
