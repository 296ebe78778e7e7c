// Shared by the issue-10 regression files (regressions-*.test.ts): deadlines that turn a
// hang into a failure with a message, a byte counter for a peer that may be reset, the
// process's open fd count, and a watchdog that ends a file whose tests left the event
// loop held (a leaked send keeps the reactor referenced, and node:test would then wait
// forever for the file to end).
import * as fs from 'node:fs'
import type * as net from 'node:net'
import { after } from 'node:test'
import { tcpPair, type TcpPair } from './helpers'

export const MiB = 1024 * 1024
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** `p`, or a rejection naming `what` after `ms`: a hang fails here, with a message. */
export function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** Waits for `p` at most `ms` (never throws; the timer is cleared, so it holds nothing). */
export async function waitAtMost(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([p.then(() => undefined, () => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))])
  clearTimeout(timer)
}

export async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(5)
  }
}

/** A Promise's state, readable synchronously. */
export interface Tracked<T> {
  promise: Promise<T>
  state: 'pending' | 'resolved' | 'rejected'
  value?: T
  error?: NodeJS.ErrnoException
}

/** Tracks `p` (or the exception `fn` threw synchronously, recorded as `threw`). */
export function track<T>(fn: () => Promise<T>): Tracked<T> & { threw?: unknown } {
  let p: Promise<T>
  let threw: unknown
  try {
    p = fn()
  } catch (err) {
    threw = err
    p = Promise.reject(err)
  }
  const t: Tracked<T> & { threw?: unknown } = { promise: p, state: 'pending' }
  if (threw !== undefined) t.threw = threw
  p.then(
    (value) => {
      t.state = 'resolved'
      t.value = value
    },
    (error: NodeJS.ErrnoException) => {
      t.state = 'rejected'
      t.error = error
    },
  )
  return t
}

/** Waits (at most `ms`) until every tracked Promise settled; never throws. */
export async function settleAll(list: Array<Tracked<unknown>>, ms: number): Promise<void> {
  await waitAtMost(ms, Promise.allSettled(list.map((t) => t.promise)))
  await sleep(0) // let the .then in track() run
}

/** What a peer got: its bytes, and how the stream ended ('end', 'error:<code>' or still open). */
export interface Received {
  chunks: Buffer[]
  bytes: number
  ended: 'open' | 'end' | string
  done: Promise<void>
  buffer(): Buffer
}

/** Collects what `socket` receives and how it ends, never rejecting (a reset is data too). */
export function receive(socket: net.Socket, keep = true): Received {
  const r: Received = {
    chunks: [],
    bytes: 0,
    ended: 'open',
    done: undefined as unknown as Promise<void>,
    buffer: () => Buffer.concat(r.chunks),
  }
  r.done = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      r.bytes += chunk.length
      if (keep) r.chunks.push(chunk)
    })
    socket.once('end', () => {
      if (r.ended === 'open') r.ended = 'end'
      resolve()
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (r.ended === 'open') r.ended = `error:${err.code}`
      resolve()
    })
    socket.once('close', () => {
      if (r.ended === 'open') r.ended = 'close'
      resolve()
    })
  })
  return r
}

/** Records uncaught exceptions while a test runs; `stop()` returns them. */
export function catchUncaught(): { errors: unknown[]; stop(): unknown[] } {
  const errors: unknown[] = []
  const onError = (err: unknown) => errors.push(err)
  process.on('uncaughtException', onError)
  return {
    errors,
    stop() {
      process.off('uncaughtException', onError)
      return errors
    },
  }
}

/** `err` is an instance of `Class` with this `code`. */
export function isCoded(err: unknown, Class: ErrorConstructor, code: string): boolean {
  return err instanceof Class && (err as NodeJS.ErrnoException).code === code
}

/** A short description of an error for assertion messages. */
export function errText(err: unknown): string {
  if (!(err instanceof Error)) return `non-Error ${String(err)}`
  return `${err.constructor.name}(code=${String((err as NodeJS.ErrnoException).code)}): ${err.message}`
}

/**
 * After the file's last test: if something still holds the event loop 3 s later, say
 * so and end the process with a failure (a leaked send, fd or timer).
 */
export function exitWatchdog(): void {
  after(() => {
    setTimeout(() => {
      const alive = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap')
      process.stderr.write(`regression watchdog: the event loop was still held 3 s after the last test (a send, fd or timer was left behind); active: ${alive.join(', ')}\n`)
      process.exitCode = 1
      process.exit()
    }, 3000).unref()
  })
}

/** The TCP state of the connection local:remote in /proc/net/tcp ('absent' once gone). */
export function tcpState(localPort: number, remotePort: number): string {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0')
  const names: Record<string, string> = { '01': 'ESTABLISHED', '07': 'CLOSE', '08': 'CLOSE_WAIT', '06': 'TIME_WAIT' }
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f[1]?.endsWith(`:${hex(localPort)}`) && f[2]?.endsWith(`:${hex(remotePort)}`)) return names[f[3]!] ?? f[3]!
  }
  return 'absent'
}

/** A loopback TCP pair whose sockets' errors are expected (resets), closed after the test. */
export async function pairFor(t: { after(fn: () => unknown): void }): Promise<TcpPair> {
  const pair = await tcpPair()
  pair.client.on('error', () => {})
  pair.server.on('error', () => {})
  t.after(() => pair.close())
  return pair
}

/** How `got` differs from `want`, for a message ('exact' when equal). */
export function wireVerdict(got: Buffer, want: Buffer): string {
  if (got.equals(want)) return 'exact'
  let i = 0
  while (i < got.length && i < want.length && got[i] === want[i]) i++
  return `got ${got.length} bytes, want ${want.length}; first difference at byte ${i}`
}
