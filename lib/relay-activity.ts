// Node's idle timeout and relays: Node restarts a socket's `setTimeout()` timer on its
// own reads and writes, and sees none while the relay thread moves the socket's bytes.
// keepActive() watches a running job's progress counter and restarts the timers of its
// sockets whenever bytes moved since the last look, so that only a relay where nothing
// moves times out. A timer runs only for a job with a socket whose timeout was set when
// the job started (a timeout set later is not seen), at a quarter of the shortest
// timeout: 'timeout' then fires no sooner than its delay after the last byte moved,
// and at most a quarter of it later.
import type * as net from 'node:net'
import { refreshIdleTimer } from './node-internals'
import { jobProgress } from './relay-engine'

/** Watches job `id` for the idle timeouts of `sockets`; returns the stop. */
export function keepActive(id: number, sockets: Array<net.Socket | undefined>): () => void {
  const timed = sockets.filter((s): s is net.Socket => s !== undefined && (s.timeout ?? 0) > 0)
  if (timed.length === 0) return () => {}
  const shortest = Math.min(...timed.map((s) => s.timeout!))
  let seen = jobProgress(id)
  const timer = setInterval(() => {
    const now = jobProgress(id)
    if (now < 0 || now === seen) return
    seen = now
    for (const s of timed) refreshIdleTimer(s)
  }, Math.max(10, Math.floor(shortest / 4)))
  timer.unref()
  return () => clearInterval(timer)
}
