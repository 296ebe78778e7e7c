// setSocketOption / getSocketOption: int socket options, one to one with the kernel,
// checked by what the kernel then does (UDP_CORK joins sends into one datagram) and by
// what it reads back; and their errors in Node's shapes.
import * as assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import { test } from 'node:test'
import { constants, dup, getSocketOption, readErrorQueue, recv, send, setSocketOption, setZeroCopy } from '../lib'
import { native } from '../lib/native'
import { dgramSocketFd } from '../lib/node-internals'
import { testPipe, throwsSystemError } from './helpers'

const { IPPROTO_UDP, UDP_CORK, SOL_SOCKET, SO_SNDBUF, SO_RCVLOWAT, MSG_DONTWAIT, MSG_TRUNC, MSG_ZEROCOPY } = constants

/** Two loopback UDP fds that only the test uses: `tx` connected to `rx`. */
async function rawUdpPair(t: { after(fn: () => void): void }): Promise<{ tx: number; rx: number }> {
  const receiver = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve))
  const sender = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => sender.connect(receiver.address().port, '127.0.0.1', resolve))
  const rx = dup(dgramSocketFd(receiver)!)
  const tx = dup(dgramSocketFd(sender)!)
  await Promise.all([receiver, sender].map((s) => new Promise<void>((resolve) => s.close(resolve))))
  t.after(() => {
    native.closeFd(tx)
    native.closeFd(rx)
  })
  return { tx, rx }
}

/** The next datagram's length and its first bytes (without waiting; undefined if none). */
function nextDatagram(fd: number, head = 64): { length: number; data: Buffer } | undefined {
  const buf = Buffer.alloc(head)
  try {
    const length = recv(fd, buf, MSG_DONTWAIT | MSG_TRUNC)
    return { length, data: buf.subarray(0, Math.min(length, head)) }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return undefined
    throw err
  }
}

const settle = () => new Promise((r) => setTimeout(r, 20))

test('UDP_CORK holds sends back and sends them as one datagram when unset', async (t) => {
  const { tx, rx } = await rawUdpPair(t)
  assert.equal(getSocketOption(tx, IPPROTO_UDP, UDP_CORK), 0)
  setSocketOption(tx, IPPROTO_UDP, UDP_CORK, 1)
  assert.equal(getSocketOption(tx, IPPROTO_UDP, UDP_CORK), 1)
  assert.equal(send(tx, Buffer.from('abc'), MSG_DONTWAIT), 3)
  assert.equal(send(tx, Buffer.from('de'), MSG_DONTWAIT), 2)
  assert.equal(send(tx, Buffer.alloc(0), MSG_DONTWAIT), 0, 'an empty send adds nothing')
  await settle()
  assert.equal(nextDatagram(rx), undefined, 'nothing left while corked')
  setSocketOption(tx, IPPROTO_UDP, UDP_CORK, 0)
  await settle()
  const d = nextDatagram(rx)
  assert.deepEqual(d && { length: d.length, text: d.data.toString() }, { length: 5, text: 'abcde' })
  assert.equal(nextDatagram(rx), undefined, 'one datagram')
})

test('corked MSG_ZEROCOPY sends: an id each, one notification for the datagram, copied', async (t) => {
  const { tx, rx } = await rawUdpPair(t)
  setZeroCopy(tx, true)
  const payload = Buffer.alloc(3000, 0x61)
  setSocketOption(tx, IPPROTO_UDP, UDP_CORK, 1)
  for (let i = 0; i < 3; i++) assert.equal(send(tx, payload.subarray(0, 1000), MSG_DONTWAIT | MSG_ZEROCOPY), 1000)
  setSocketOption(tx, IPPROTO_UDP, UDP_CORK, 0)
  let entries: ReturnType<typeof readErrorQueue> = []
  for (let i = 0; i < 100 && entries.length === 0; i++) {
    await settle()
    entries = readErrorQueue(tx)
  }
  assert.equal(entries.length, 1, JSON.stringify(entries))
  assert.deepEqual({ lo: entries[0]!.info, hi: entries[0]!.data }, { lo: 0, hi: 2 }, 'three ids in one range')
  assert.ok(entries[0]!.code & constants.SO_EE_CODE_ZEROCOPY_COPIED, 'a corked datagram is copied')
  assert.equal(nextDatagram(rx)?.length, 3000)
})

test('getSocketOption reads back what the kernel made of a request', async (t) => {
  const { tx } = await rawUdpPair(t)
  setSocketOption(tx, SOL_SOCKET, SO_SNDBUF, 1 << 16)
  assert.equal(getSocketOption(tx, SOL_SOCKET, SO_SNDBUF), 2 << 16, 'doubled for the bookkeeping')
  setSocketOption(tx, SOL_SOCKET, SO_RCVLOWAT, 1 << 16)
  assert.equal(getSocketOption(tx, SOL_SOCKET, SO_RCVLOWAT), 1 << 16)
})

test('socket option errors: SystemErrors from the kernel, coded TypeError/RangeError for arguments', async (t) => {
  const { tx } = await rawUdpPair(t)
  const p = testPipe(t)
  throwsSystemError(() => setSocketOption(p.writeFd, IPPROTO_UDP, UDP_CORK, 1), 'ENOTSOCK', 'setsockopt')
  throwsSystemError(() => getSocketOption(p.writeFd, SOL_SOCKET, SO_SNDBUF), 'ENOTSOCK', 'getsockopt')
  throwsSystemError(() => setSocketOption(tx, IPPROTO_UDP, 9999, 1), 'ENOPROTOOPT', 'setsockopt')
  throwsSystemError(() => getSocketOption(tx, constants.IPPROTO_TCP, 1), 'ENOTSUP', 'getsockopt') // (EOPNOTSUPP, as Node names it)
  const closed = dup(tx)
  native.closeFd(closed)
  throwsSystemError(() => setSocketOption(closed, SOL_SOCKET, SO_SNDBUF, 1), 'EBADF', 'setsockopt')
  const call = setSocketOption as (...a: unknown[]) => void
  assert.throws(() => call(tx, SOL_SOCKET, SO_SNDBUF), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => call(tx, '1', SO_SNDBUF, 1), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => call(tx, -1, SO_SNDBUF, 1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => call(tx, SOL_SOCKET, 1.5, 1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => call(tx, SOL_SOCKET, SO_SNDBUF, 2 ** 31), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => call(-1, SOL_SOCKET, SO_SNDBUF, 1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  // A negative int is a value like any other (the kernel decides).
  setSocketOption(tx, SOL_SOCKET, SO_SNDBUF, -1)
})
