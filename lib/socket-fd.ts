// Reading the fd behind Node's sockets. Node keeps it private: net.Socket has
// `_handle.fd`; dgram.Socket keeps its handle in a symbol-keyed state object (its
// `_handle` getter is deprecated, DEP0112). Linux and macOS expose fds there; the
// number is Node's, valid only until Node closes the socket.
import * as dgram from 'node:dgram'
import * as net from 'node:net'

interface HasFd {
  fd?: number
}

export function netSocketFd(socket: net.Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: HasFd | null })._handle
  return validFd(handle?.fd)
}

export function dgramSocketFd(socket: dgram.Socket): number | undefined {
  const state = Object.getOwnPropertySymbols(socket)
    .filter((s) => s.description === 'state symbol')
    .map((s) => (socket as unknown as Record<symbol, { handle?: HasFd | null }>)[s])[0]
  return validFd(state?.handle?.fd)
}

function validFd(fd: unknown): number | undefined {
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined
}
