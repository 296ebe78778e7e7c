// Node's idle timeout and relays: Node restarts a socket's `setTimeout()` timer on its
// own reads and writes, and sees none while the relay thread moves the socket's bytes.
// keepActive() watches a running job's progress counter and restarts the timers of its
// sockets whenever bytes moved since the last look, so that only a relay where nothing
// moves times out. A timer runs only while one of the job's sockets has a timeout (one
// set after the job started too: setTimeout() is followed while the job runs), at a
// quarter of the shortest: 'timeout' then fires no sooner than its delay after the last
// byte moved, and at most a quarter of it later.
import type * as net from 'node:net'
import { followSetTimeout, refreshIdleTimer } from './node-internals'
import { jobProgress } from './relay-engine'

/** Watches job `id` for the idle timeouts of `sockets`; returns the stop. */
export function keepActive(id: number, sockets: Array<net.Socket | undefined>): () => void {
  const present = sockets.filter((s): s is net.Socket => s !== undefined)
  let timer: NodeJS.Timeout | undefined
  let seen = jobProgress(id)
  const arm = () => {
    clearInterval(timer)
    timer = undefined
    const timed = present.filter((s) => (s.timeout ?? 0) > 0)
    if (timed.length === 0) return
    const shortest = Math.min(...timed.map((s) => s.timeout!))
    timer = setInterval(() => {
      const now = jobProgress(id)
      if (now < 0 || now === seen) return
      seen = now
      for (const s of timed) refreshIdleTimer(s)
    }, Math.max(10, Math.floor(shortest / 4)))
    timer.unref()
  }
  const unfollow = present.map((s) => followSetTimeout(s, arm))
  arm()
  return () => {
    clearInterval(timer)
    for (const undo of unfollow) undo()
  }
}
