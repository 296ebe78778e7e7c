// Matching what the peer received against the model's segments. Every segment must
// arrive whole and in order, except a file send that was aborted and rejected: it may
// have sent nothing (then it is skipped), or part of itself, and then the stream must
// end inside it (the contract resets the connection), or all of itself when the abort
// came after every byte was handed over.
import type { Seg } from './harness'

export interface Layout {
  /** Where each segment starts in the received stream (past the end: at its end). */
  start: number[]
  /** Aborted segments the match took as "sent nothing". */
  skipped: boolean[]
}

export type Match =
  | { ok: true; layout: Layout; complete: boolean; cutIn: number | undefined }
  | { ok: false; layout: Layout; at: number; seg: number }

/** An aborted file send that rejected: it may have sent nothing. */
export function optional(s: Seg): boolean {
  return s.abortable && s.op?.state === 'rejected'
}

/** Length of the common prefix of two equally long buffers. */
function common(a: Buffer, b: Buffer): number {
  const step = 64 * 1024
  for (let at = 0; at < a.length; at += step) {
    const x = a.subarray(at, at + step)
    const y = b.subarray(at, at + step)
    if (x.equals(y)) continue
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return at + i
  }
  return a.length
}

function fillFrom(layout: Layout, from: number, at: number): void {
  for (let j = from; j < layout.start.length; j++) layout.start[j] = at
}

export function matchStream(rx: Buffer, segs: Seg[]): Match {
  const layout: Layout = { start: segs.map(() => 0), skipped: segs.map(() => false) }
  return walk(rx, segs, 0, 0, layout)
}

function walk(rx: Buffer, segs: Seg[], i: number, pos: number, layout: Layout): Match {
  for (; i < segs.length; i++) {
    const s = segs[i]!
    layout.start[i] = pos
    if (optional(s) && pos === rx.length) {
      layout.skipped[i] = true
      continue
    }
    if (optional(s) && s.bytes.length > 0) return branch(rx, segs, i, pos, layout)
    const n = Math.min(s.bytes.length, rx.length - pos)
    const k = common(rx.subarray(pos, pos + n), s.bytes.subarray(0, n))
    if (k < n) return { ok: false, layout, at: pos + k, seg: i }
    if (n < s.bytes.length) {
      fillFrom(layout, i + 1, rx.length)
      return { ok: true, layout, complete: false, cutIn: undefined }
    }
    pos += n
  }
  if (pos < rx.length) return { ok: false, layout, at: pos, seg: -1 }
  return { ok: true, layout, complete: true, cutIn: undefined }
}

/** An aborted segment with bytes left to match: try "sent nothing", then "sent a prefix, then the end". */
function branch(rx: Buffer, segs: Seg[], i: number, pos: number, layout: Layout): Match {
  const skipLayout: Layout = { start: [...layout.start], skipped: [...layout.skipped] }
  skipLayout.skipped[i] = true
  const skip = walk(rx, segs, i + 1, pos, skipLayout)
  if (skip.ok) return skip
  const s = segs[i]!
  const rest = rx.subarray(pos)
  const n = Math.min(rest.length, s.bytes.length)
  const k = common(rest.subarray(0, n), s.bytes.subarray(0, n))
  if (k === s.bytes.length) {
    // Whole, then more: the abort came after every byte was handed over (the reset
    // that followed came after the later sends' bytes too).
    const wholeLayout: Layout = { start: [...layout.start], skipped: [...layout.skipped] }
    const whole = walk(rx, segs, i + 1, pos + k, wholeLayout)
    if (whole.ok) return whole
  }
  if (k === rest.length) {
    fillFrom(layout, i + 1, rx.length)
    return { ok: true, layout, complete: false, cutIn: i }
  }
  return skip.at >= pos + k ? skip : { ok: false, layout, at: pos + k, seg: i }
}

/** Which segment's bytes appear at `at` of the received stream (for the report). */
export function locate(rx: Buffer, at: number, segs: Seg[]): string {
  if (at >= rx.length) return 'nothing received there'
  for (const len of [64, 8, 1]) {
    const window = rx.subarray(at, at + len)
    const hits = segs.flatMap((s) => (s.bytes.indexOf(window) >= 0 ? [`${s.label} at +${s.bytes.indexOf(window)}`] : []))
    if (hits.length > 0) return `the ${window.length} B received there are ${hits.slice(0, 3).join(' or ')}`
  }
  return 'the bytes received there match no command'
}
