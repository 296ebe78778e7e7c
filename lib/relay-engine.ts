// The environment's relay thread (native/relay.cc, native/relay_loop.cc), one per
// Node environment, made on first use: jobs go in with start(), each comes back once
// through onDone on the JS thread. The process is kept alive while any job runs, as the
// sockets themselves would keep it alive had Node been reading them.
import * as os from 'node:os'
import { native, type NativeRelayEngine, type RelayDoneCallback } from './native'

/** How a job ended, as the native loop reports it. */
export interface JobEnd {
  /** 0, or the positive errno of the failed call (ECANCELED after cancel()). */
  errno: number
  syscall: string | undefined
  /** Bytes written out per direction: [a -> b, b -> a], buffered bytes included. */
  moved: [number, number]
  /** The source ended before `length` bytes. */
  premature: boolean
  /** The fd the failed call was on: 0 (a), 1 (b), -1 (neither). */
  failedEnd: number
}

export interface JobSpec {
  mechanism: 0 | 1 | 2
  bufferSize: number
  fdA: number
  fdB: number
  /** The caller's names for the two ends ('a' and 'b', 'socket' and 'file'): errors about an end use them. */
  names: [string, string]
  bIsFile: boolean
  fileOffset: number | bigint | null
  ab: DirectionSpec | undefined
  ba: DirectionSpec | undefined
}

export interface DirectionSpec {
  length: number | bigint | null
  shutdownOnEof: boolean
  prefix: Buffer | null
}

let engine: NativeRelayEngine | undefined
const waiting = new Map<number, (end: JobEnd) => void>()
let nextId = 1

/**
 * How long an abandoned upload's settle waits for its thread's own report (which comes
 * at once unless a file write blocks the thread): with it, the job's fds are closed
 * before the Promise settles, as after any other end.
 */
export const ABANDON_GRACE_MS = 50
const graceTimers = new Map<number, NodeJS.Timeout>()

const onDone: RelayDoneCallback = (id, errno, syscall, movedAB, movedBA, premature, failedEnd) => {
  finish(id, { errno, syscall, moved: [movedAB, movedBA], premature, failedEnd })
}

function finish(id: number, end: JobEnd): void {
  const settle = waiting.get(id)
  if (settle === undefined) return // an abandoned upload's late report
  waiting.delete(id)
  clearTimeout(graceTimers.get(id))
  graceTimers.delete(id)
  if (waiting.size === 0) engine?.unref()
  try {
    settle(end)
  } catch (err) {
    // Settling only resolves Promises and hands sockets back; should it throw, the
    // thread-safe function's dispatch is no place to end the process from.
    process.emitWarning(`zerocopy: settling a relay threw: ${String(err)}`, 'ZeroCopyWarning')
  }
}

/**
 * Starts a job (throws on a bad argument, before anything started); `settle` runs
 * once when it ends, after the thread closed its fds.
 */
export function startJob(spec: JobSpec, settle: (end: JobEnd) => void): { id: number; mechanism: 'copy' | 'splice' } {
  engine ??= new native.RelayEngine(onDone)
  const id = nextId
  nextId = nextId >= 0xfffffffe ? 1 : nextId + 1
  const { ab, ba } = spec
  const mechanism = engine.start(
    id,
    spec.mechanism,
    spec.bufferSize,
    spec.fdA,
    spec.fdB,
    spec.bIsFile,
    spec.fileOffset,
    ab !== undefined,
    ab?.length ?? null,
    ab?.shutdownOnEof ?? false,
    ba !== undefined,
    ba?.length ?? null,
    ba?.shutdownOnEof ?? false,
    ab?.prefix ?? null,
    ba?.prefix ?? null,
    spec.names[0],
    spec.names[1],
  )
  if (waiting.size === 0) engine.ref()
  waiting.set(id, settle)
  return { id, mechanism }
}

/**
 * Ends a running job; its settle then sees ECANCELED (or its real end, if that came
 * first). An upload is abandoned at once: its thread no longer reads the socket, and
 * it settles with its thread's report or, if a file write blocks the thread, after
 * ABANDON_GRACE_MS with `moved` what was written when abandoned.
 */
export function cancelJob(id: number): void {
  if (!waiting.has(id) || graceTimers.has(id)) return
  const written = engine?.cancel(id)
  if (written === undefined) return
  const end: JobEnd = { errno: os.constants.errno.ECANCELED, syscall: undefined, moved: [written, 0], premature: false, failedEnd: -1 }
  graceTimers.set(id, setTimeout(() => finish(id, end), ABANDON_GRACE_MS))
}

/** Bytes a running job wrote so far (both directions); -1 once it ended. */
export function jobProgress(id: number): number {
  return waiting.has(id) && engine !== undefined ? engine.progress(id) : -1
}

/** What the relay thread of this environment is doing (see {@link relayStats}). */
export interface RelayStats {
  /** relay() and receiveToFile() calls running now. */
  running: number
  /** Bytes written by every relay and upload of this environment so far, running ones included. */
  bytes: number
  /**
   * Bytes of buffers and pipes the running relays hold now. A relay direction waiting
   * for its source gives its buffer back after 100 ms: idle relays hold 0.
   */
  held: number
}

/** Progress of every relay at once, updated by the relay thread as bytes move: for progress lines and metrics. */
export function relayStats(): RelayStats {
  return { running: waiting.size, bytes: engine?.moved() ?? 0, held: engine?.held() ?? 0 }
}

/** Jobs still running (for tests: nothing may be left once every relay settled). */
export function runningJobs(): number {
  return waiting.size
}
