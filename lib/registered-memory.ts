// Buffers whose pages are registered with the environment's io_uring ring
// (native/uring-buffers.cc): a send from one goes as SEND_ZC with
// IORING_RECVSEND_FIXED_BUF, so the kernel does not pin its pages again on every send.
// Ordinary Buffers keep working everywhere; these only save work.
import { uringUnavailable } from './engine'
import { invalidArgType } from './errors'
import { integerOption } from './validate'
import { allocPageAligned } from './memory'
import { uringHub } from './uring'

const MAX_REGISTERED = 2 ** 30 // the kernel's limit per registered buffer

/**
 * A zero-filled, page-aligned Buffer of `size` bytes (0 to 2^30) whose pages are
 * registered with this environment's io_uring ring, where the io_uring engine runs and
 * a slot is free (1024 per environment; registering counts against RLIMIT_MEMLOCK
 * without CAP_IPC_LOCK). Elsewhere an ordinary page-aligned Buffer (as
 * allocPageAligned): every send works either way; `stats.registeredSends` counts the
 * sends that went from registered pages. The registration ends when the Buffer is
 * garbage-collected (a send holds its Buffer until the kernel released it).
 */
export function allocRegistered(size: number): Buffer {
  if (size === undefined) throw invalidArgType('size', 'of type number', size)
  integerOption('size', size, 0, 0, MAX_REGISTERED)
  if (size === 0 || uringUnavailable() !== '') return allocPageAligned(size)
  let memory: ArrayBuffer
  try {
    memory = uringHub().ring.allocRegistered(size)
  } catch {
    return allocPageAligned(size) // no slot left, RLIMIT_MEMLOCK, or no sparse tables (before Linux 5.19)
  }
  return Buffer.from(memory, 0, size)
}
