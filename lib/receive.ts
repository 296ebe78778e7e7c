// Reading many datagrams in one call (recvmmsg), which Node's dgram cannot do: a UDP
// receiver that keeps up with a batched sender, as the msg_zerocopy example's does.
import * as dgram from 'node:dgram'
import { native, type ByteView } from './native'
import { dgramSocketFd } from './node-internals'

/**
 * Reads the datagrams queued on a UDP socket right now, up to `buffers.length` (and at
 * most 256) in one `recvmmsg(2)`, without blocking: datagram i is copied into
 * `buffers[i]` (cut to fit) and `lengths[i]` gets its full length, so empty buffers
 * count datagrams and their bytes without copying them.
 *
 * `socket` is a bound `dgram.Socket` (its fd is used for this call only; Node's own
 * 'message' events go on, each datagram goes to exactly one reader) or a socket fd.
 *
 * @returns How many datagrams were read: 0 when none is queued.
 */
export function receiveDatagrams(socket: dgram.Socket | number, buffers: readonly ByteView[], lengths: Uint32Array): number {
  const n = native.receiveMany(fdOf(socket), buffers, lengths)
  if (n < 0) throw native.systemError(-n, 'recvmmsg')
  return n
}

/**
 * Asks for a receive buffer of `bytes` on a UDP (or any) socket and returns what the
 * kernel now gives it (twice the request: the kernel counts its overhead in). Unlike
 * dgram's `recvBufferSize`, a process with CAP_NET_ADMIN (root) gets past
 * `net.core.rmem_max` (SO_RCVBUFFORCE); others are capped there, as with SO_RCVBUF.
 * UDP has no flow control: a receiver that may fall behind for a moment needs room.
 */
export function setReceiveBuffer(socket: dgram.Socket | number, bytes: number): number {
  return native.setReceiveBuffer(fdOf(socket), bytes)
}

function fdOf(socket: dgram.Socket | number): number {
  const fd = typeof socket === 'number' ? socket : socket instanceof dgram.Socket ? dgramSocketFd(socket) : undefined
  if (fd === undefined) {
    throw Object.assign(new TypeError('The "socket" argument must be a bound dgram.Socket or an fd'), { code: 'ERR_INVALID_ARG_TYPE' })
  }
  return fd
}
