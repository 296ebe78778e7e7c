// Same-tick batching: single send() calls made in one tick on one socket reach the
// kernel in one native call, on both engines: a sendmmsg (datagrams) or a sendmsg loop
// (streams) on the epoll engine, one linked chain on the io_uring engine. Each request
// is still its own send call (own id, own datagram, own result), in queue order,
// exactly as if sent one by one; only the crossings into the kernel are shared. The
// channel (lib/send-channel.ts) defers its pump to the tick's end when a send() is
// queued, so what the same tick queued is there to batch.
//
// On io_uring the sockets share the crossing too: the ring's hub (lib/uring.ts) runs
// the pumps of every socket that gathered sends in one microtask, where each channel
// only prepares its run (its SQEs) and waits ('submitted'); then one io_uring_enter
// takes every socket's SQEs, and each channel concludes its call as if it had just
// made it, and goes on (any further call of that pump goes at once, alone).
import type { SendPolicy } from './send-policy'
import { BytesRequest, type SendRequest } from './send-requests'

/** At most this many requests per native call (the native batch limit). */
const MAX_RUN = 256

/**
 * The run of requests at the head of `queue` that can go in one native call: `atLeast`
 * (two, or one when the call is prepared for a shared io_uring_enter) or more ready send() requests of one view each, with bytes to send, all zero-copy or
 * all copies (as `zeroCopy` says for the head). Undefined when there is no such run.
 */
export function batchableRun(queue: readonly SendRequest[], policy: SendPolicy, zeroCopy: boolean, datagram: boolean, atLeast = 2): BytesRequest[] | undefined {
  const run: BytesRequest[] = []
  for (const req of queue) {
    if (run.length === MAX_RUN || !(req instanceof BytesRequest) || !req.ready || req.handedOver) break
    const view = req.nextView(datagram)
    if (view === undefined || policy.zeroCopyFor(req) !== zeroCopy) break
    run.push(req)
  }
  return run.length >= atLeast ? run : undefined
}

/** The one view each request of `run` sends. */
export function runViews(run: readonly BytesRequest[], datagram: boolean): Uint8Array[] {
  return run.map((req) => req.nextView(datagram)!)
}

/**
 * After the native call that sent `run` (one view each) returned r >= 0 with out[0]
 * bytes and out[1] calls: tells `account` what each request sent, in order (a stream
 * may take only part of one, which is then the last).
 */
export function accountRun(
  run: readonly BytesRequest[],
  views: readonly Uint8Array[],
  datagram: boolean,
  out: Float64Array,
  account: (req: BytesRequest, bytes: number) => void,
): void {
  let left = out[0]!
  const calls = out[1]!
  for (let i = 0; i < calls; i++) {
    // A datagram goes whole; on a stream only the last call can be short.
    const bytes = datagram ? views[i]!.length : Math.min(left, views[i]!.length)
    left -= bytes
    account(run[i]!, bytes)
  }
}
