// The real side of the model-based sequences (test/model-sequences.test.ts): one
// connection (test/model/link.ts: loopback TCP, or TLS), the byte stream the model
// expects, every Promise (and write callback) the sequence made, and the violations
// seen so far. Commands (commands.ts) drive it; the
// end of a sequence (verify.ts) settles and checks it.
import * as fs from 'node:fs'
import type * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { inputQueueBytes, ZeroCopySocket, type ZeroCopyOptions } from '../../lib'
import { native } from '../../lib/native'
import { randomBytes, socketFd } from '../helpers'
import type { Link } from './link'

/** Written over a buffer or file once its send settled; the generator never makes it. */
export const MARK = 0xee
export const MiB = 1024 * 1024
/** Where payloads come from: reproducible, and free of MARK. */
export const POOL_SIZE = 16 * MiB
const POOL = makePool()

function makePool(): Buffer {
  const b = randomBytes(POOL_SIZE, 0x5eed)
  for (let i = 0; i < b.length; i++) if (b[i] === MARK) b[i] = 0x11
  return b
}

/** A fresh copy (its own ArrayBuffer, never Node's shared pool) of `size` pool bytes from `off`. */
export function payload(off: number, size: number): Uint8Array {
  const at = off % (POOL_SIZE - size + 1)
  const out = new Uint8Array(size)
  out.set(POOL.subarray(at, at + size))
  return out
}

/** One Promise (or write callback) of the sequence and how it settled. */
export interface Op {
  cmd: number
  label: string
  state: 'pending' | 'resolved' | 'rejected'
  settles: number
  value?: { mechanism?: string; bytes?: number }
  error?: NodeJS.ErrnoException
  startedAt: number
  settledAt?: number
  /** performance.now() when its AbortSignal fired. */
  abortedAt?: number
  /** Its signal was aborted before the call. */
  abortedBefore?: boolean
  /** The connection was alive when it aborted (so AbortError is the only right rejection). */
  abortedAlive?: boolean
  /** A socket.write callback: Node calls it without an error for a write that destroy() cancelled. */
  nodeWrite?: boolean
}

/** Bytes the model expects at this place in the stream. */
export interface Seg {
  cmd: number
  label: string
  bytes: Buffer
  op: Op | undefined
  /** A file send with an AbortSignal: if it rejects, it may have sent nothing. */
  abortable: boolean
}

export interface PeerState {
  paused: boolean
  reset: boolean
  /** Bytes the peer held (read, buffered in JS, in its receive queue) right before its reset. */
  heldAtReset: number
  /** performance.now() of the reset. */
  resetAt: number
  sawEnd: boolean
  closed: boolean
  error: Error | undefined
}

export class Harness {
  readonly labels: string[] = []
  /** When each command started, ms since the sequence started. */
  readonly times: number[] = []
  readonly t0 = performance.now()
  readonly segs: Seg[] = []
  readonly ops: Op[] = []
  readonly violations: string[] = []
  readonly instances = new Set<ZeroCopySocket>()
  readonly chunks: Buffer[] = []
  readonly peer: PeerState = { paused: false, reset: false, heldAtReset: -1, resetAt: -1, sawEnd: false, closed: false, error: undefined }
  /** Aborts that fire at the next command. */
  readonly deferredAborts: Array<() => void> = []
  /** Aborts waiting for a timer or the peer; the end of the sequence fires those left. */
  readonly laterAborts = new Set<() => void>()
  current: ZeroCopySocket | undefined
  cmd = -1
  rx = 0
  /** A wait already timed out: later waits of this sequence are short. */
  hung = false
  private files = 0

  constructor(
    readonly pair: Link,
    readonly options: ZeroCopyOptions,
    readonly dir: string,
  ) {
    const { server, client } = pair
    server.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk)
      this.rx += chunk.length
    })
    // After a reset, libuv reports a reader that still had bytes queued as 'end': the
    // kernel's TCP state tells them apart (CLOSE after a reset, CLOSE_WAIT after a FIN).
    // An HTTP/2 stream's 'end' is END_STREAM, its reset an error.
    server.on('end', () => (this.peer.sawEnd = !kernelSawReset(server as net.Socket)))
    server.on('close', () => {
      this.peer.closed = true
      // Node's HTTP/2 client emits 'end' after RST_STREAM too, and no 'error' for CANCEL:
      // the stream's RST code tells a reset from a clean end.
      const rst = (server as { rstCode?: number }).rstCode
      if (typeof rst === 'number' && rst !== 0) {
        this.peer.sawEnd = false
        this.peer.error ??= new Error(`the stream was reset (RST_STREAM code ${rst})`)
      }
    })
    server.on('error', (err) => (this.peer.error = err))
    client.on('error', () => {}) // ECONNRESET/EPIPE after a reset: expected, not uncaught
  }

  get label(): string {
    return `#${this.cmd} ${this.labels[this.cmd]}`
  }

  /** Starts command `label`; aborts deferred to "the next command" fire now. */
  begin(label: string): void {
    this.cmd++
    this.labels.push(label)
    this.times.push(performance.now() - this.t0)
    this.fireDeferredAborts()
  }

  fireDeferredAborts(): void {
    for (const abort of this.deferredAborts.splice(0)) abort()
  }

  violate(message: string, where = this.label): void {
    this.violations.push(`${where}: ${message}`)
  }

  note(text: string): void {
    this.labels[this.cmd] += ` [${text}]`
  }

  /** Appends the bytes a call puts in the stream, at call time. */
  append(bytes: Uint8Array, abortable = false): Seg {
    const seg: Seg = { cmd: this.cmd, label: this.label, bytes: Buffer.from(bytes), op: undefined, abortable }
    this.segs.push(seg)
    return seg
  }

  /** Neither side has seen the connection die. */
  alive(): boolean {
    return !this.pair.client.destroyed && !this.peer.reset && this.peer.error === undefined
  }

  /** Bytes the model holds so far (every segment whole). */
  modelLength(): number {
    return this.segs.reduce((n, s) => n + s.bytes.length, 0)
  }

  /** Calls a Promise-returning API; a synchronous throw is a violation (the contract: reject). */
  callAsync<T>(fn: () => Promise<T>): Promise<T> | undefined {
    try {
      return fn()
    } catch (err) {
      this.violate(`threw synchronously (${(err as NodeJS.ErrnoException).code ?? err}) instead of rejecting`)
      return undefined
    }
  }

  newOp(seg?: Seg): Op {
    const op: Op = { cmd: this.cmd, label: this.label, state: 'pending', settles: 0, startedAt: performance.now() }
    if (seg !== undefined) seg.op = op
    this.ops.push(op)
    return op
  }

  /** Records how `p` settles; `overwrite` runs once it did (invariant 3). */
  track(p: Promise<unknown>, seg?: Seg, overwrite?: () => void): Op {
    const op = this.newOp(seg)
    p.then(
      (value) => this.settle(op, 'resolved', value, undefined, overwrite),
      (err) => this.settle(op, 'rejected', undefined, err, overwrite),
    )
    return op
  }

  settle(op: Op, state: 'resolved' | 'rejected', value: unknown, error: unknown, overwrite?: () => void): void {
    op.settles++
    if (op.settles > 1) return this.violate(`settled ${op.settles} times`, op.label)
    op.state = state
    op.value = value as Op['value']
    op.error = error as NodeJS.ErrnoException
    op.settledAt = performance.now()
    overwrite?.()
  }

  /** The open instance for the client: the current one, else `from(client)`. */
  zc(): ZeroCopySocket | undefined {
    if (this.current !== undefined) return this.current
    try {
      this.current = ZeroCopySocket.from(this.pair.client, this.options)
    } catch (err) {
      if (!this.pair.client.destroyed) this.violate(`from(client) threw ${(err as NodeJS.ErrnoException).code}`)
      return undefined
    }
    this.instances.add(this.current)
    return this.current
  }

  /** The client's fd right now (Node's number), or undefined once it closed. */
  clientFd(): number | undefined {
    const fd = (this.pair.client as unknown as { _handle?: { fd?: number } | null })._handle?.fd
    return typeof fd === 'number' && fd >= 0 ? fd : undefined
  }

  writeFile(bytes: Uint8Array): string {
    const file = path.join(this.dir, `f${this.files++}`)
    fs.writeFileSync(file, bytes)
    return file
  }

  /** Rewrites a file in place with MARK (the same page-cache pages the send mapped). */
  overwriteFile(file: string, size: number): void {
    let fd: number
    try {
      fd = fs.openSync(file, 'r+')
    } catch {
      return // settled after its sequence ended and removed the file
    }
    try {
      fs.writeSync(fd, Buffer.alloc(size, MARK), 0, size, 0)
    } finally {
      fs.closeSync(fd)
    }
  }

  /** What the peer holds in any form; measured right before its reset. */
  peerHeld(): number {
    const { server } = this.pair
    let queued = 0
    try {
      queued = inputQueueBytes(socketFd(server as net.Socket)) // no fd of its own (HTTP/2): 0
    } catch {
      // closed already
    }
    return this.rx + server.readableLength + queued
  }

  received(): Buffer {
    return Buffer.concat(this.chunks)
  }
}

/** A fresh temp directory for one sequence's files. */
export function sequenceDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'zerocopy-model-'))
}

export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length
}


export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `cond` every 5 ms for at most `ms`; says whether it held. */
export async function waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) return false
    await sleep(5)
  }
  return true
}

/** The peer socket's kernel TCP state is CLOSE: a reset arrived, whatever Node reported. */
function kernelSawReset(socket: net.Socket): boolean {
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) return false
  const out = new Float64Array(2) // [bytes acknowledged, tcpi_state]
  return native.tcpAckState(fd, out) === 0 && out[1] === 7
}
