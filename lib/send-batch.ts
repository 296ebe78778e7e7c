// Same-tick batching: single send() calls made in one tick on one socket reach the
// kernel in one native call, on both engines: a sendmmsg (datagrams) or a sendmsg loop
// (streams) on the epoll engine, one linked chain in one io_uring_enter on the io_uring
// engine. Each request is still its own send call (own id, own datagram, own result),
// in queue order, exactly as if sent one by one; only the crossings into the kernel are
// shared. The channel (lib/send-channel.ts) defers its pump to a microtask when a
// send() is queued, so what the same tick queued is there to batch.
import type { SendPolicy } from './send-policy'
import type { SendOps } from './send-ops'
import { BytesRequest, type SendRequest } from './send-requests'

/** At most this many requests per native call (the native batch limit). */
const MAX_RUN = 256

/**
 * The run of requests at the head of `queue` that can go in one native call: two or
 * more ready send() requests of one view each, with bytes to send, all zero-copy or
 * all copies (as `zeroCopy` says for the head). Undefined when there is no such run.
 */
export function batchableRun(queue: readonly SendRequest[], policy: SendPolicy, zeroCopy: boolean, datagram: boolean): BytesRequest[] | undefined {
  const run: BytesRequest[] = []
  for (const req of queue) {
    if (run.length === MAX_RUN || !(req instanceof BytesRequest) || !req.ready || req.handedOver) break
    const view = req.nextView(datagram)
    if (view === undefined || policy.zeroCopyFor(req) !== zeroCopy) break
    run.push(req)
  }
  return run.length >= 2 ? run : undefined
}

/**
 * Sends `run` with one native call and tells `account` what each request sent (in
 * order; a stream may take only part of one, which is then the last). Returns what the
 * native call returned: requests done (>= 0), or -errno when the first send failed.
 * Throws when the native layer refuses one request's memory (detached while queued).
 */
export function sendRun(
  ops: SendOps,
  fd: number,
  run: readonly BytesRequest[],
  flags: number,
  datagram: boolean,
  out: Float64Array,
  account: (req: BytesRequest, bytes: number) => void,
): number {
  const views = run.map((req) => req.nextView(datagram)!)
  const r = ops.sendEach(fd, views, 0, 0, flags, datagram, out)
  if (r < 0) return r
  let left = out[0]!
  const calls = out[1]!
  for (let i = 0; i < calls; i++) {
    // A datagram goes whole; on a stream only the last call can be short.
    const bytes = datagram ? views[i]!.length : Math.min(left, views[i]!.length)
    left -= bytes
    account(run[i]!, bytes)
  }
  return r
}
