// The Range header (RFC 9110, 14.1-14.2) for a representation of `size` bytes. A header
// whose unit is not `bytes`, or whose range set does not parse, is ignored (the whole
// file goes with 200), as the RFC allows; a set that parses but of which no range
// overlaps the file is unsatisfiable (416). Ranges that overlap or nearly touch are
// merged, in file order: a client reads each part's Content-Range, and merging stops a
// request of many overlapping ranges from multiplying the bytes sent.

/** Bytes `start` to `end`, both included. */
export interface ByteRange {
  start: number
  end: number
}

export type RangeOutcome = { kind: 'ignore' } | { kind: 'unsatisfiable' } | { kind: 'ranges'; ranges: ByteRange[] }

/** More parts than this after merging: send the whole file instead (RFC 9110, 14.2 allows it). */
export const MAX_PARTS = 64
/** Ranges closer than a multipart part's headers are merged into one. */
const MERGE_GAP = 80

const SPEC = /^(?:(\d+)-(\d*)|-(\d+))$/

export function parseByteRanges(header: string, size: number): RangeOutcome {
  const eq = header.indexOf('=')
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return { kind: 'ignore' }
  const specs = header
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '') // empty list elements are allowed (RFC 9110, 5.6.1)
  if (specs.length === 0) return { kind: 'ignore' }
  const wanted: ByteRange[] = []
  for (const spec of specs) {
    const m = SPEC.exec(spec)
    if (m === null) return { kind: 'ignore' }
    if (m[3] !== undefined) {
      const n = Number(m[3]) // past 2^53: the whole file
      if (n > 0 && size > 0) wanted.push({ start: Math.max(0, size - n), end: size - 1 })
      continue
    }
    // Positions past 2^53 are past any file: a first one is unsatisfiable, a last one clipped.
    const first = Number(m[1])
    const last = m[2] === '' || !Number.isSafeInteger(Number(m[2])) ? Infinity : Number(m[2])
    if (last < first) return { kind: 'ignore' } // an invalid range-spec (RFC 9110, 14.1.1)
    if (first < size) wanted.push({ start: first, end: Math.min(last, size - 1) })
  }
  if (wanted.length === 0) return { kind: 'unsatisfiable' }
  const ranges = merge(wanted)
  if (ranges.length > MAX_PARTS) return { kind: 'ignore' }
  return { kind: 'ranges', ranges }
}

function merge(ranges: ByteRange[]): ByteRange[] {
  if (ranges.length === 1) return ranges
  const sorted = [...ranges].sort((a, b) => a.start - b.start)
  const out: ByteRange[] = [{ ...sorted[0]! }]
  for (const r of sorted.slice(1)) {
    const last = out[out.length - 1]!
    if (r.start <= last.end + MERGE_GAP) last.end = Math.max(last.end, r.end)
    else out.push({ ...r })
  }
  return out
}
