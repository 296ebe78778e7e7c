// The commands of the model-based sequences: each acts on the CLIENT, the sender (over
// TLS the server side's TLS socket, over HTTP/2 a server stream), or on the peer,
// appends the bytes it puts in the stream to the model at call time, and tracks its
// Promise. A send is never awaited by the command that makes it; `await zc.close()`
// and "await the latest send" wait (bounded), and only with a reading peer and no cork
// (anything else would be the test deadlocking itself); `wait` lets the event loop run.
import * as net from 'node:net'
import fc from 'fast-check'
import { sendFileZeroCopy, sendZeroCopy, ZeroCopySocket } from '../../lib'
import { MARK, MiB, POOL_SIZE, payload, sleep, waitUntil, type Harness, type Op } from './harness'
import type { LinkKind } from './link'

export interface Model {
  corked: number
  paused: boolean
  reset: boolean
}
type Cmd = fc.AsyncCommand<Model, Harness>

const CLOSE_WAIT_MS = 10_000
const VIEW_KINDS = ['Buffer', 'Uint8Array', 'DataView', 'ArrayBuffer'] as const

/** A view of kind `kind` over all of `u` (ArrayBuffer: `u` owns its whole buffer). */
function asKind(u: Uint8Array, kind: (typeof VIEW_KINDS)[number]): ArrayBufferView | ArrayBuffer {
  if (kind === 'Buffer') return Buffer.from(u.buffer, u.byteOffset, u.length)
  if (kind === 'DataView') return new DataView(u.buffer, u.byteOffset, u.length)
  if (kind === 'ArrayBuffer') return u.buffer as ArrayBuffer
  return u
}

/** Pool bytes for command `cmd` (distinct per command even where shrinking made every `off` 0). */
function bytesFor(h: Harness, off: number, size: number): Uint8Array {
  return payload(off + h.cmd * 1_000_003, size)
}

/** Payload views for `sizes`; the k-th view's kind cycles from `off`. */
function makeViews(h: Harness, sizes: number[], off: number) {
  const parts = sizes.map((size, i) => bytesFor(h, off + i * 7919, size))
  const views = parts.map((u, i) => asKind(u, VIEW_KINDS[(off + i) % VIEW_KINDS.length]!))
  return { parts, views, bytes: Buffer.concat(parts), overwrite: () => parts.forEach((u) => u.fill(MARK)) }
}

type SendVia = 'zc.send' | 'zc.send copy' | 'sendZeroCopy(socket)' | 'sendZeroCopy(fd)' | 'zc.sendEach'

class SendCmd implements Cmd {
  constructor(
    readonly via: SendVia,
    readonly sizes: number[],
    readonly array: boolean,
    readonly off: number,
  ) {}
  check = () => true
  async run(_m: Model, h: Harness) {
    h.begin(this.toString())
    const fd = h.clientFd()
    const zc = this.via.startsWith('zc.') ? h.zc() : undefined
    if ((this.via === 'sendZeroCopy(fd)' && fd === undefined) || (this.via.startsWith('zc.') && zc === undefined)) {
      return h.note('skipped: client closed')
    }
    const v = makeViews(h, this.sizes, this.off)
    const data = (this.array || this.via === 'zc.sendEach' ? v.views : v.views[0]!) as Uint8Array
    const p = h.callAsync(() => this.call(h, zc, fd, data))
    if (p !== undefined) h.track(p, h.append(v.bytes), v.overwrite)
  }
  private call(h: Harness, zc: ZeroCopySocket | undefined, fd: number | undefined, data: Uint8Array): Promise<unknown> {
    if (this.via === 'sendZeroCopy(socket)') return sendZeroCopy(h.pair.client, data)
    // The contract allows an fd number wherever a socket goes; the types do not (yet).
    if (this.via === 'sendZeroCopy(fd)') return sendZeroCopy(fd as unknown as net.Socket, data)
    if (this.via === 'zc.sendEach') return zc!.sendEach(data as unknown as Uint8Array[])
    return zc!.send(data, { copy: this.via === 'zc.send copy' })
  }
  toString() {
    const kinds = this.sizes.map((s, i) => `${VIEW_KINDS[(this.off + i) % 4]}:${s}`).join(', ')
    const data = this.array || this.via === 'zc.sendEach' ? `[${kinds}]` : kinds
    if (this.via === 'zc.send copy') return `zc.send(${data}, {copy: true})`
    if (this.via.endsWith(')')) return `${this.via.slice(0, -1)}, ${data})`
    return `${this.via}(${data})`
  }
}

/** When a file send's signal aborts: 'midway' = once the peer has read up to the file. */
type AbortAt = 'none' | 'before' | 'sync' | 'next' | 'midway' | number

class FileCmd implements Cmd {
  constructor(
    readonly size: number,
    readonly off: number,
    readonly range: { offset: number; length: number } | null,
    readonly byFd: boolean,
    readonly abortAt: AbortAt,
  ) {}
  check = () => true
  async run(_m: Model, h: Harness) {
    h.begin(this.toString())
    if (this.byFd && h.clientFd() === undefined) return h.note('skipped: client closed')
    const content = bytesFor(h, this.off, this.size)
    const file = h.writeFile(content)
    const offset = this.range?.offset ?? 0
    const end = this.range === null ? this.size : Math.min(this.size, offset + this.range.length)
    const ac = this.abortAt === 'none' ? undefined : new AbortController()
    if (this.abortAt === 'before') ac!.abort() // already aborted at the call; armAbort records it
    const opts = { ...(this.range && { offset, length: this.range.length }), signal: ac?.signal }
    const target = this.byFd ? (h.clientFd() as unknown as net.Socket) : h.pair.client
    const start = h.modelLength()
    const p = h.callAsync(() => sendFileZeroCopy(target, file, opts))
    if (p === undefined) return
    const op = h.track(p, h.append(content.subarray(offset, end), ac !== undefined), () => h.overwriteFile(file, this.size))
    if (ac !== undefined) armAbort(h, op, ac, this.abortAt, start)
  }
  toString() {
    const range = this.range === null ? '' : `, {offset: ${this.range.offset}, length: ${this.range.length}}`
    const when = typeof this.abortAt === 'number' ? `after ${this.abortAt} ms` : this.abortAt === 'midway' ? 'once the peer reached it' : this.abortAt
    const abort = this.abortAt === 'none' ? '' : `, abort ${when}`
    return `sendFileZeroCopy(${this.byFd ? 'fd' : 'socket'}, ${this.size} B file${range}${abort})`
  }
}

/** Aborts `ac` when `at` says (`start`: where the file begins in the model's stream). */
function armAbort(h: Harness, op: Op, ac: AbortController, at: AbortAt, start: number): void {
  const abort = () => {
    if (op.state === 'pending' && op.abortedAt === undefined) {
      op.abortedAt = performance.now()
      op.abortedAlive = h.alive()
      op.abortedBefore = at === 'before'
    }
    ac.abort()
  }
  if (at === 'before' || at === 'sync') abort()
  else if (at === 'next') h.deferredAborts.push(abort)
  else if (at === 'midway') later(h, abort, (fire) => setInterval(() => (h.rx > start || op.state !== 'pending') && fire(), 1))
  else if (typeof at === 'number') later(h, abort, (fire) => setTimeout(fire, at))
}

/** An abort that a timer fires (or the end of the sequence, whichever is first). */
function later(h: Harness, abort: () => void, arm: (fire: () => void) => NodeJS.Timeout): void {
  const fire = () => {
    clearTimeout(timer) // clears an interval too
    h.laterAborts.delete(fire)
    abort()
  }
  const timer = arm(fire)
  h.laterAborts.add(fire)
}

class WriteCmd implements Cmd {
  constructor(
    readonly size: number,
    readonly off: number,
  ) {}
  check = () => true
  async run(_m: Model, h: Harness) {
    h.begin(this.toString())
    const u = bytesFor(h, this.off, this.size)
    const seg = h.append(u)
    const op = h.newOp(seg)
    op.nodeWrite = true
    const cb = (err?: Error | null) => h.settle(op, err ? 'rejected' : 'resolved', {}, err ?? undefined, () => u.fill(MARK))
    try {
      h.pair.client.write(Buffer.from(u.buffer, 0, u.length), cb)
    } catch (err) {
      h.violate(`socket.write threw ${(err as NodeJS.ErrnoException).code}`)
    }
  }
  toString() {
    return `socket.write(${this.size} B)`
  }
}

class CorkCmd implements Cmd {
  constructor(readonly cork: boolean) {}
  check = (m: Readonly<Model>) => (this.cork ? m.corked < 3 : m.corked > 0)
  async run(m: Model, h: Harness) {
    h.begin(this.toString())
    if (this.cork) h.pair.client.cork()
    else h.pair.client.uncork()
    m.corked += this.cork ? 1 : -1
  }
  toString() {
    return this.cork ? 'socket.cork()' : 'socket.uncork()'
  }
}

class CloseCmd implements Cmd {
  constructor(readonly awaited: boolean) {}
  // Awaiting close() behind a cork or a paused reader would be this test's own deadlock.
  check = (m: Readonly<Model>) => !this.awaited || (m.corked === 0 && !m.paused)
  async run(_m: Model, h: Harness) {
    h.begin(this.toString())
    const zc = h.zc()
    if (zc === undefined) return h.note('skipped: client closed')
    h.current = undefined
    const p = h.callAsync(() => zc.close())
    if (p === undefined) return
    const op = h.track(p)
    if (!this.awaited) return
    const ms = h.hung ? 1000 : CLOSE_WAIT_MS
    if (!(await waitUntil(() => op.state !== 'pending', ms))) {
      h.violate(`await zc.close() did not settle in ${ms} ms with a reading peer (${statsLine(zc)})`)
      h.hung = true
      return
    }
    if (zc.stats.unsent !== 0 || zc.stats.outstandingIds !== 0) h.violate(`after await close(): ${statsLine(zc)}`)
  }
  toString() {
    return this.awaited ? 'await zc.close()' : 'zc.close() (not awaited)'
  }
}

export function statsLine(zc: ZeroCopySocket): string {
  const s = zc.stats
  return `unsent ${s.unsent}, outstandingIds ${s.outstandingIds}, zeroCopyCalls ${s.zeroCopyCalls}, completedIds ${s.completedIds}`
}

class FromCmd implements Cmd {
  constructor(readonly byFd: boolean) {}
  check = () => true
  async run(_m: Model, h: Harness) {
    h.begin(this.toString())
    const fd = h.clientFd()
    if (this.byFd ? fd === undefined : h.pair.client.destroyed) return h.note('skipped: client closed')
    const before = h.current
    let zc: ZeroCopySocket
    try {
      zc = ZeroCopySocket.from(this.byFd ? fd! : h.pair.client, h.options)
    } catch (err) {
      return h.violate(`threw ${(err as NodeJS.ErrnoException).code} on an open socket`)
    }
    h.instances.add(zc)
    if (before === undefined) h.current = zc
    else if (zc !== before) {
      h.violate('returned a new instance while one is open for the same kernel socket')
      h.track(zc.close()) // ours to close; its settling is checked like every Promise
    }
  }
  toString() {
    return `ZeroCopySocket.from(${this.byFd ? 'fd' : 'socket'})`
  }
}

class PeerCmd implements Cmd {
  constructor(readonly action: 'pause' | 'resume' | 'resetAndDestroy') {}
  check = (m: Readonly<Model>) => !m.reset && (this.action === 'pause' ? !m.paused : this.action === 'resume' ? m.paused : true)
  async run(m: Model, h: Harness) {
    h.begin(this.toString())
    const { server } = h.pair
    if (this.action === 'pause') server.pause()
    else if (this.action === 'resume') server.resume()
    else {
      h.peer.heldAtReset = h.peerHeld()
      h.peer.resetAt = performance.now()
      h.peer.reset = true
      h.note(`the peer held ${h.peer.heldAtReset} B`)
      h.pair.resetPeer()
      m.reset = true
    }
    h.peer.paused = m.paused = this.action === 'pause'
  }
  toString() {
    return `peer.${this.action}()`
  }
}

/** Lets the event loop run: the peer reads, completions arrive, Promises settle. */
class WaitCmd implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true
  async run(_m: Model, h: Harness) {
    h.begin(this.toString())
    await (this.ms === 0 ? new Promise((resolve) => setImmediate(resolve)) : sleep(this.ms))
  }
  toString() {
    return this.ms === 0 ? 'await setImmediate' : `await sleep(${this.ms})`
  }
}

/** What sequential code does: awaits the latest send (with a reading peer and no cork). */
class AwaitLastCmd implements Cmd {
  check = (m: Readonly<Model>) => m.corked === 0 && !m.paused
  async run(_m: Model, h: Harness) {
    h.begin(this.toString())
    const op = h.ops.filter((o) => !o.nodeWrite).at(-1)
    if (op === undefined || op.state !== 'pending') return h.note('nothing pending')
    h.note(`awaits ${op.label}`)
    const ms = h.hung ? 1000 : CLOSE_WAIT_MS
    await waitUntil(() => op.state !== 'pending', ms)
    if (op.state !== 'pending') return
    h.violate(`still pending after ${ms} ms with a reading peer`, op.label)
    h.hung = true
  }
  toString() {
    return 'await the latest send'
  }
}

// ---- arbitraries ---------------------------------------------------------------------

const size = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 4096 }) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 256 * 1024 }) },
  { weight: 1, arbitrary: fc.integer({ min: 256 * 1024, max: 2 * MiB }) },
)
const off = fc.integer({ min: 0, max: POOL_SIZE - 1 })
const viewSizes = fc.array(fc.oneof(size, fc.constant(0)), { minLength: 1, maxLength: 5 })
const abortAt: fc.Arbitrary<AbortAt> = fc.oneof(
  fc.constantFrom<AbortAt>('before', 'sync', 'next', 'midway', 'midway'),
  fc.integer({ min: 0, max: 50 }),
)
const range = fc.option(fc.record({ offset: fc.integer({ min: 0, max: 2 * MiB }), length: fc.integer({ min: 0, max: 2 * MiB }) }))

const sendVia = (via: SendVia) =>
  fc.tuple(fc.boolean(), viewSizes, off).map(([array, sizes, o]) => new SendCmd(via, array ? sizes : sizes.slice(0, 1), array, o))
const file = (byFd: boolean, aborts: boolean) =>
  fc
    .tuple(size, off, range, aborts ? abortAt : fc.constant<AbortAt>('none'))
    .map(([s, o, r, a]) => new FileCmd(s, o, r && inFile(s, r), byFd, a))

/** A range inside a file of `size` bytes (its length may reach one byte past the end). */
function inFile(size: number, r: { offset: number; length: number }) {
  const offset = r.offset % (size + 1)
  return { offset, length: r.length % (size - offset + 2) }
}

/** Every kind of command, by name, with its weight: sends and files most, the peer reset rarely. */
const KINDS: Record<string, [number, fc.Arbitrary<Cmd>]> = {
  send: [5, sendVia('zc.send')],
  sendCopy: [2, sendVia('zc.send copy')],
  sendZeroCopy: [2, sendVia('sendZeroCopy(socket)')],
  sendZeroCopyFd: [1, sendVia('sendZeroCopy(fd)')],
  sendEach: [3, fc.tuple(fc.array(size, { maxLength: 8 }), off).map(([sizes, o]) => new SendCmd('zc.sendEach', sizes, true, o))],
  file: [2, file(false, false)],
  fileFd: [1, file(true, false)],
  fileAbort: [1, file(false, true)],
  fileAbortFd: [1, file(true, true)],
  write: [3, fc.tuple(size, off).map(([s, o]) => new WriteCmd(s, o))],
  cork: [2, fc.boolean().map((c) => new CorkCmd(c))],
  close: [1, fc.constant(new CloseCmd(false))],
  closeAwait: [1, fc.constant(new CloseCmd(true))],
  from: [1, fc.constant(new FromCmd(false))],
  fromFd: [1, fc.constant(new FromCmd(true))],
  pause: [3, fc.constantFrom('pause', 'resume').map((a) => new PeerCmd(a as 'pause' | 'resume'))],
  reset: [1, fc.constant(new PeerCmd('resetAndDestroy'))],
  wait: [3, fc.constantFrom(0, 1, 5, 20).map((ms) => new WaitCmd(ms))],
  awaitLast: [2, fc.constant(new AwaitLastCmd())],
  // A file bigger than the kernel buffers of a loopback connection can hold, aborted
  // while it goes: the cut comes inside it. On the copy path only (TLS, HTTP/2), where
  // copies run at memory speed, so smaller files are always whole when an abort fires.
  bigFileAbort: [1, fc.tuple(fc.integer({ min: 6 * MiB, max: 10 * MiB }), off, fc.oneof(fc.constant<AbortAt>('midway'), fc.integer({ min: 1, max: 10 }))).map(([s, o, a]) => new FileCmd(s, o, null, false, a))],
}
export const COMMAND_KINDS = Object.keys(KINDS)
/** Kinds drawn only on the copy path. */
const COPY_KINDS = new Set(['bigFileAbort'])
/**
 * Kinds that name the socket by its fd number: over TLS that fd carries encrypted
 * records, and nothing can tell a bare number is under a TLS socket (README); an HTTP/2
 * stream has no fd. They apply over plain TCP only.
 */
const FD_KINDS = new Set(['sendZeroCopyFd', 'fileFd', 'fileAbortFd', 'fromFd'])

/** One command of the kinds named (all by default) that apply to `link`, weighted. */
export function command(only: string[] = COMMAND_KINDS, link: LinkKind = 'tcp'): fc.Arbitrary<Cmd> {
  const unknown = only.filter((k) => !(k in KINDS))
  if (unknown.length > 0) throw new Error(`unknown command kinds ${unknown.join(', ')}; known: ${COMMAND_KINDS.join(', ')}`)
  const kinds = link === 'tcp' ? only.filter((k) => !COPY_KINDS.has(k)) : only.filter((k) => !FD_KINDS.has(k))
  if (kinds.length === 0) throw new Error(`none of the kinds ${only.join(', ')} applies over ${link}`)
  return fc.oneof(...kinds.map((k) => ({ weight: KINDS[k]![0], arbitrary: KINDS[k]![1] })))
}
