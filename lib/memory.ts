// Page-aligned Buffers. A pipe holds one page per slot and MSG_ZEROCOPY pins whole
// pages: a buffer that starts mid-page fills one slot less of a pipe (a 1 MiB
// vmsplice into a 1 MiB pipe moves 16 bytes short) and pins one page more.
import { invalidArgType, outOfRange } from './errors'
import { native, type ByteView } from './native'
import { integerOption } from './validate'

/** The system page size in bytes. */
export const pageSize: number = native.pageSize

/** The offset of a view's first byte within its memory page (0 means page-aligned). */
export function pageOffsetOf(view: ByteView): number {
  return native.pageOffsetOf(view)
}

/**
 * A zero-filled Buffer of `size` bytes whose first byte starts a memory page. It is a
 * view into a slightly larger ArrayBuffer that is never pooled or shared with other
 * Buffers (V8 never moves ArrayBuffer memory, so the alignment holds for its lifetime).
 */
export function allocPageAligned(size: number): Buffer {
  if (size === undefined) throw invalidArgType('size', 'of type number', size)
  integerOption('size', size, 0, 0, Number.MAX_SAFE_INTEGER)
  let backing: Buffer
  try {
    backing = Buffer.alloc(size + pageSize)
  } catch (err) {
    // Past what V8 will allocate (Node 22+ lets the request through to fail there).
    throw Object.assign(outOfRange('size', 'a size this process can allocate', size), { cause: err })
  }
  const skip = (pageSize - pageOffsetOf(backing)) % pageSize
  return backing.subarray(skip, skip + size)
}
