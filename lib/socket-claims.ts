// Which sockets a running relay or upload holds. A socket is claimed by its kernel
// identity (its cookie, native.socketIdentity), not by the name it was given: a
// net.Socket, its fd and any duplicate of it are one socket, so a second relay or
// upload naming it any way is refused before anything moves, and so is a relay whose
// two ends are one socket. fds belong to the process, not to one Node environment: the
// claimed identities are kept process-wide in native code (native/socket-claims.cc), so
// a worker naming the fd of a socket the main thread relays is refused too, and a
// terminated worker's claims end with it.
import * as net from 'node:net'
import { invalidArgValue, invalidState } from './errors'
import { native } from './native'
import { netSocketFd } from './node-internals'

/** A relay's or an upload's end, as given: a Node socket or an fd. */
export type ClaimedEnd = net.Socket | number

/** Node sockets of this environment in a running relay or upload (also those not yet with an fd). */
const claimedSockets = new WeakSet<net.Socket>()

/** A claim on one call's ends. */
export interface Claim {
  /** The kernel identity of end `i`, if it is known (a socket fd). */
  key(i: number): string | undefined
  /**
   * End `i` now has `fd` (a Node socket that had none at the call): it is claimed by its
   * identity too. ERR_INVALID_STATE if another relay or upload holds that socket.
   */
  identify(i: number, fd: number): void
  /** The ends are free again (idempotent). */
  release(): void
}

/**
 * Claims the ends of one call, named `names` in errors: ERR_INVALID_ARG_VALUE when two
 * are the same socket (for a relay: "b must be another socket than a"), ERR_INVALID_STATE
 * when one is in a running relay or upload. Nothing is claimed when it throws.
 */
export function claim(ends: ClaimedEnd[], names: string[]): Claim {
  const keys = ends.map(identityOf)
  for (let i = 0; i < ends.length; i++) {
    for (let j = 0; j < i; j++) {
      if (ends[i] === ends[j] || (keys[i] !== undefined && keys[i] === keys[j])) {
        const shown = typeof ends[i] === 'number' ? ends[i] : `the same socket as ${names[j]}`
        throw invalidArgValue(names[i]!, shown, `must be another socket than ${names[j]}`)
      }
    }
  }
  ends.forEach((end, i) => {
    if (end instanceof net.Socket && claimedSockets.has(end)) throw alreadyClaimed(names[i]!)
  })
  const known = keys.filter((key): key is string => key !== undefined)
  const taken = native.claimSockets(known)
  if (taken >= 0) throw alreadyClaimed(names[keys.indexOf(known[taken])]!)
  for (const end of ends) if (end instanceof net.Socket) claimedSockets.add(end)
  let released = false
  return {
    key: (i) => keys[i],
    identify(i, fd) {
      if (released || keys[i] !== undefined) return
      const key = identityOf(fd)
      if (key === undefined) return
      const twin = keys.indexOf(key)
      if (twin >= 0) throw invalidArgValue(names[i]!, fd, `must be another socket than ${names[twin]}`)
      if (native.claimSockets([key]) >= 0) throw alreadyClaimed(names[i]!)
      keys[i] = key
    },
    release() {
      if (released) return
      released = true
      for (const end of ends) if (end instanceof net.Socket) claimedSockets.delete(end)
      native.releaseSockets(keys.filter((key): key is string => key !== undefined))
    },
  }
}

function alreadyClaimed(name: string) {
  return invalidState(`"${name}" is already in a running relay or upload`)
}

/**
 * The kernel identity of a socket fd, or of a Node socket's fd (libuv's, used only here,
 * synchronously); undefined for one with no fd yet, or an fd that is no socket (the
 * relay's own checks refuse that one with its proper error).
 */
function identityOf(end: ClaimedEnd): string | undefined {
  const fd = typeof end === 'number' ? end : netSocketFd(end)
  if (fd === undefined) return undefined
  try {
    return native.socketIdentity(fd).key
  } catch {
    return undefined // EBADF, ENOTSOCK
  }
}
