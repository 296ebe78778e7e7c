// The end of one model sequence: prompt aborts, end() or destroy(), the peer reads to
// the end, every Promise settles, every instance closes; then the invariants.
import * as crypto from 'node:crypto'
import { sendZeroCopy, ZeroCopySocket } from '../../lib'
import { statsLine } from './commands'
import { MARK, waitUntil, type Harness, type Op } from './harness'
import { locate, matchStream, type Layout } from './match'

/** An abort must reject this soon, even with a stalled peer. */
export const ABORT_PROMPT_MS = 1500
/** Everything settles this soon after the peer resumed or closed (invariant 2). */
export const SETTLE_MS = 10_000
const CLOSE_MS = 5000
const ZC_MECHANISMS = ['msg_zerocopy', 'mmap+msg_zerocopy', 'io_uring', 'mmap+io_uring']

export type EndKind = 'end' | 'destroy'

interface Ending {
  kind: EndKind
  destroyedEarly: boolean
  late: Op | undefined
}

export async function finishSequence(h: Harness, kind: EndKind): Promise<Ending> {
  const aborting = h.laterAborts.size + h.deferredAborts.length + h.ops.filter((o) => o.abortedAt !== undefined && o.state === 'pending').length
  if (aborting > 0) h.begin('(end) the aborts left fire; each must reject promptly')
  h.fireDeferredAborts()
  await waitUntil(() => h.laterAborts.size === 0, 100)
  for (const fire of [...h.laterAborts]) fire()
  await checkAbortsPrompt(h)
  h.begin(`socket.${kind}()`)
  const { client, server } = h.pair
  const ending: Ending = { kind, destroyedEarly: client.destroyed, late: undefined }
  if (!client.destroyed && kind === 'end') {
    client.end()
    h.begin('sendZeroCopy(socket, 4 B) after end()')
    const p = h.callAsync(() => sendZeroCopy(client, Buffer.from('late')))
    if (p !== undefined) ending.late = h.track(p)
  } else if (!client.destroyed) client.destroy()
  if (h.peer.paused && !h.peer.reset) server.resume()
  const ms = h.hung ? 3000 : SETTLE_MS
  const settled = await waitUntil(() => h.peer.closed && h.ops.every((o) => o.state !== 'pending'), ms)
  if (!settled) h.hung = true
  if (!h.peer.closed) h.violate(`the peer saw no end of the stream within ${ms} ms`)
  // An HTTP/2 stream's destroy() drops what the session still queues (past the peer's
  // flow-control window), yet closes with code 0, as a clean end does: not an end.
  if (kind === 'destroy' && h.pair.kind === 'h2') h.peer.sawEnd = false
  h.begin('(end) close every instance')
  await closeInstances(h)
  client.destroy()
  server.destroy()
  return ending
}

async function checkAbortsPrompt(h: Harness): Promise<void> {
  const aborted = h.ops.filter((o) => o.abortedAt !== undefined)
  const deadline = Math.max(0, ...aborted.map((o) => o.abortedAt! + ABORT_PROMPT_MS)) - performance.now()
  await waitUntil(() => aborted.every((o) => o.state !== 'pending'), deadline)
  for (const o of aborted) {
    if (o.state === 'pending') h.violate(`aborted ${Math.round(performance.now() - o.abortedAt!)} ms ago and still pending (peer ${h.peer.paused ? 'paused' : 'reading'})`, o.label)
    else if (o.settledAt! - o.abortedAt! > ABORT_PROMPT_MS) h.violate(`settled ${Math.round(o.settledAt! - o.abortedAt!)} ms after its abort`, o.label)
  }
}

/** Closes every instance the sequence saw; each close settles and leaves nothing behind (invariant 5). */
async function closeInstances(h: Harness): Promise<void> {
  if (!h.pair.client.destroyed) {
    try {
      h.instances.add(ZeroCopySocket.from(h.pair.client, h.options))
    } catch {
      // closed meanwhile
    }
  }
  const closing = [...h.instances].map((zc) => ({ zc, op: h.track(zc.close()) }))
  await waitUntil(() => closing.every((c) => c.op.state !== 'pending'), h.hung ? 1000 : CLOSE_MS)
  for (const { zc, op } of closing) {
    if (op.state === 'pending') h.violate(`zc.close() at the end did not settle (${statsLine(zc)})`)
    else if (zc.stats.unsent !== 0 || zc.stats.outstandingIds !== 0) h.violate(`after close: ${statsLine(zc)}`)
  }
}

// ---- the invariants ------------------------------------------------------------------

export function checkSequence(h: Harness, ending: Ending): void {
  // The connection died (a reset either way, destroy(), or an abort that reset it): a prefix then.
  const terminated = h.peer.reset || ending.kind === 'destroy' || ending.destroyedEarly || h.peer.error !== undefined
  const rx = h.received()
  checkSettled(h, terminated, ending)
  const layout = checkStream(h, rx, terminated)
  checkMarks(h, rx, layout ?? reportLayout(h))
  if (layout !== undefined && h.peer.sawEnd) checkResolvedReceived(h, rx, layout)
  if (layout !== undefined && h.peer.reset) checkResetRejects(h, layout)
}

function describe(o: Op): string {
  return o.state === 'rejected' ? `${o.error?.name ?? 'Error'} ${o.error?.code ?? o.error?.message}` : o.state
}

function checkSettled(h: Harness, terminated: boolean, ending: Ending): void {
  for (const o of h.ops) {
    if (o.state === 'pending') h.violate(`never settled (invariant 2)`, o.label)
    else if (o === ending.late) {
      if (o.state !== 'rejected' || (!terminated && o.error?.code !== 'ERR_STREAM_WRITE_AFTER_END')) {
        h.violate(`a send after end() ${describe(o)} (expected ERR_STREAM_WRITE_AFTER_END)`, o.label)
      }
    } else if (o.abortedBefore && o.state === 'resolved') {
      h.violate('resolved though its signal was aborted before the call (expected AbortError)', o.label)
    } else if (o.abortedAt !== undefined && o.state === 'rejected') {
      if (o.abortedAlive && (o.error?.name !== 'AbortError' || o.error?.code !== 'ABORT_ERR')) {
        h.violate(`aborted, rejected with ${describe(o)} (expected AbortError ABORT_ERR)`, o.label)
      }
    } else if (o.state === 'rejected' && !terminated) h.violate(`rejected (${describe(o)}) on a healthy connection`, o.label)
  }
}

/** Invariant 1: the exact stream, or with a reset/destroy/abort a prefix of it. */
function checkStream(h: Harness, rx: Buffer, terminated: boolean): Layout | undefined {
  const m = matchStream(rx, h.segs)
  const model = Buffer.concat(h.segs.filter((_, i) => !m.layout.skipped[i]).map((s) => s.bytes))
  const sums = `received ${rx.length} B sha256 ${sha(rx)}, model ${model.length} B sha256 ${sha(model)}`
  if (!m.ok) {
    const s = h.segs[m.seg]
    const where = s === undefined ? 'past the end of the model' : `inside ${s.label} at +${m.at - m.layout.start[m.seg]!}`
    h.violate(`first differing byte at offset ${m.at}, ${where}; ${locate(rx, m.at, h.segs)}; ${sums}`, 'stream')
    return undefined
  }
  if (m.cutIn !== undefined) {
    const s = h.segs[m.cutIn]!
    const got = rx.length - m.layout.start[m.cutIn]!
    if (!terminated) h.violate(`${got} B of this aborted file reached the peer, yet the connection was not reset`, s.label)
    else if (h.peer.sawEnd) h.violate(`${got} of ${s.bytes.length} B of this aborted file reached the peer, followed by a clean EOF (not a reset)`, s.label)
  }
  if (!terminated && !m.complete) h.violate(`the peer read to its end but got only a prefix: ${sums}`, 'stream')
  return m.layout
}

function sha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex').slice(0, 16)
}

function segAt(layout: Layout, offset: number, h: Harness): string {
  for (let i = h.segs.length - 1; i >= 0; i--) if (!layout.skipped[i] && layout.start[i]! <= offset) return h.segs[i]!.label
  return '?'
}

/** Invariant 3: no byte overwritten after its Promise settled reaches the peer. */
function checkMarks(h: Harness, rx: Buffer, layout: Layout): void {
  const at = rx.indexOf(MARK)
  if (at < 0) return
  let count = 0
  for (let i = at; i < rx.length; i++) if (rx[i] === MARK) count++
  h.violate(`0xEE (written over buffers/files once their send settled) at offset ${at} (${count} such bytes), where the model has ${segAt(layout, at, h)}`, 'marks')
}

function segEnd(h: Harness, layout: Layout, o: Op): number {
  const i = h.segs.findIndex((s) => s.op === o)
  return i < 0 ? -1 : layout.start[i]! + (layout.skipped[i] ? 0 : h.segs[i]!.bytes.length)
}

/**
 * Invariant 4: the peer read to EOF, so every resolved send lies inside what it read.
 * Not Node's write callbacks: Node calls them without an error for writes destroy() cancelled.
 */
function checkResolvedReceived(h: Harness, rx: Buffer, layout: Layout): void {
  for (const o of h.ops.filter((x) => !x.nodeWrite)) {
    const end = segEnd(h, layout, o)
    if (o.state === 'resolved' && end > rx.length) h.violate(`resolved, but the peer read to EOF and got only ${rx.length} of the ${end} B up to its end`, o.label)
  }
}

/** The peer reset while the kernel held pages of a zero-copy send: that send must reject. */
function checkResetRejects(h: Harness, layout: Layout): void {
  for (const o of h.ops) {
    const end = segEnd(h, layout, o)
    if (o.state !== 'resolved' || !ZC_MECHANISMS.includes(o.value?.mechanism ?? '') || end <= h.peer.heldAtReset) continue
    const when = o.settledAt! - h.peer.resetAt
    const rel = `${Math.abs(when).toFixed(2)} ms ${when >= 0 ? 'after' : 'before'} the reset`
    h.violate(`resolved (${o.value?.mechanism}) ${rel}, though its bytes up to ${end} were past the ${h.peer.heldAtReset} B the peer held at the reset`, o.label)
  }
}

// ---- the report ------------------------------------------------------------------------

export function report(h: Harness): string {
  const lines = [`${h.violations.length} violation(s):`, ...h.violations.map((v) => `  - ${v}`), 'commands (t+ms since the start, model offset+length, outcome):']
  const layout = reportLayout(h)
  h.labels.forEach((label, cmd) => {
    const parts: string[] = []
    h.segs.forEach((s, i) => s.cmd === cmd && parts.push(`@${layout.start[i]}+${s.bytes.length}${layout.skipped[i] ? ' (skipped)' : ''}`))
    for (const o of h.ops.filter((x) => x.cmd === cmd)) parts.push(outcome(h, o))
    lines.push(`  #${cmd} t+${h.times[cmd]!.toFixed(2)} ${label}${parts.length > 0 ? ' ' : ''}${parts.join(' ')}`)
  })
  return lines.join('\n')
}

/** The matched offsets; where the match failed, the model's own (every segment whole). */
function reportLayout(h: Harness): Layout {
  const m = matchStream(h.received(), h.segs)
  if (m.ok) return m.layout
  let at = 0
  return { start: h.segs.map((s) => (at += s.bytes.length) - s.bytes.length), skipped: h.segs.map(() => false) }
}

function outcome(h: Harness, o: Op): string {
  const ms = o.settledAt === undefined ? '' : ` at t+${(o.settledAt - h.t0).toFixed(2)}`
  return `${describe(o)}${o.value?.mechanism ? ` ${o.value.mechanism}` : ''}${ms}`
}
