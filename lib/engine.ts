// Which engine sends a socket's zero-copy bytes:
//   io_uring  IORING_OP_SEND_ZC through one ring per environment (lib/uring.ts); the
//             release is a notification CQE, never an error-queue entry, so it works on
//             dgram sockets whose error queue libuv reads (Node 24+) too
//   epoll     sendmsg(MSG_ZEROCOPY) and the socket's error queue, watched through the
//             reactor's epoll (lib/error-queue.ts)
// 'auto' (the default) takes io_uring wherever the probe (native/uring-probe.cc) says
// it works, else epoll, and says why. ZEROCOPY_ENGINE=epoll|io_uring|auto sets what
// 'auto' means for the whole process (tests run the suite once per engine with it).
import { codedError, invalidArgType } from './errors'
import { native } from './native'
import { uringHub } from './uring'

export type EngineName = 'epoll' | 'io_uring'
export type EngineOption = 'auto' | EngineName

export interface EngineChoice {
  engine: EngineName
  /** Why not io_uring, when 'auto' fell back to epoll. */
  fallback: string | undefined
}

let unavailable: string | undefined

/**
 * '' when the io_uring engine can run in this environment, else why not: probed once,
 * and then the environment's own ring is made (its failure, rare after the probe
 * passed, is a reason too).
 */
export function uringUnavailable(): string {
  if (unavailable === undefined) {
    unavailable = native.uringProbe()
    if (unavailable === '') {
      try {
        uringHub()
      } catch (err) {
        unavailable = `the ring could not be made (${(err as Error).message})`
      }
    }
  }
  return unavailable
}

/** Checks an `engine` option (undefined: 'auto'); throws a coded TypeError. */
export function engineOption(name: string, value: unknown): EngineOption {
  if (value === undefined) return 'auto'
  if (value === 'auto' || value === 'epoll' || value === 'io_uring') return value
  throw invalidArgType(name, "one of 'auto', 'epoll' or 'io_uring'", value)
}

/**
 * The engine for a new channel. An explicit 'io_uring' (option, or ZEROCOPY_ENGINE
 * for 'auto') where io_uring cannot run throws ERR_ZEROCOPY_ENGINE_UNAVAILABLE.
 */
export function chooseEngine(option: EngineOption): EngineChoice {
  const wanted = option === 'auto' ? processDefault() : option
  if (wanted === 'epoll') return { engine: 'epoll', fallback: undefined }
  const why = uringUnavailable()
  if (why === '') return { engine: 'io_uring', fallback: undefined }
  if (wanted === 'io_uring') {
    throw codedError('ERR_ZEROCOPY_ENGINE_UNAVAILABLE', `The io_uring engine cannot run here: ${why}`)
  }
  return { engine: 'epoll', fallback: why }
}

/** What 'auto' means in this process: ZEROCOPY_ENGINE, else io_uring where it runs. */
function processDefault(): EngineOption {
  const env = process.env.ZEROCOPY_ENGINE
  return env === 'epoll' || env === 'io_uring' ? env : 'auto'
}
