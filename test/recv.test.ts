// recv: the raw recvmsg with flags, on real loopback TCP and UDP sockets that only the
// test reads (duplicates kept after Node closed its own, so Node's reads cannot race).
import * as assert from 'node:assert/strict'
import * as net from 'node:net'
import { test } from 'node:test'
import { constants, dup, inputQueueBytes, recv } from '../lib'
import { native } from '../lib/native'
import { quietUdpPair, socketFd, throwsSystemError } from './helpers'

const { MSG_TRUNC, MSG_DONTWAIT, MSG_PEEK } = constants

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 2000
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2))
  assert.ok(cond(), 'condition met in time')
}

/** A TCP connection whose receiving end is a bare fd of the test's. */
async function quietTcp(t: { after(fn: () => void): void }) {
  const server = net.createServer({ pauseOnConnect: true })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  const peer = await accepted
  server.close()
  const fd = dup(socketFd(peer))
  assert.notEqual(fd, socketFd(peer))
  peer.destroy() // closes Node's fd: the connection lives on in the duplicate
  t.after(() => {
    client.destroy()
    native.closeFd(fd)
  })
  return { fd, client }
}

test('tcp: recv into views in order, MSG_PEEK keeps, MSG_TRUNC with no buffer discards', async (t) => {
  const { fd, client } = await quietTcp(t)
  throwsSystemError(() => recv(fd, Buffer.alloc(8), MSG_DONTWAIT), 'EAGAIN', 'recvmsg')
  const data = Buffer.from('0123456789abcdefghij')
  client.write(data)
  await until(() => inputQueueBytes(fd) === data.length)
  const peek = Buffer.alloc(4)
  assert.equal(recv(fd, peek, MSG_PEEK | MSG_DONTWAIT), 4)
  assert.equal(peek.toString(), '0123')
  const a = Buffer.alloc(3)
  const b = new Uint8Array(new ArrayBuffer(16), 4, 2)
  assert.equal(recv(fd, [a, b], MSG_DONTWAIT), 5, 'one iovec per view')
  assert.equal(a.toString(), '012')
  assert.equal(Buffer.from(b).toString(), '34')
  assert.equal(recv(fd, null, MSG_TRUNC | MSG_DONTWAIT, 10), 10, 'dropped 10 bytes in the kernel')
  const rest = Buffer.alloc(16)
  assert.equal(recv(fd, rest, MSG_DONTWAIT), 5)
  assert.equal(rest.subarray(0, 5).toString(), 'fghij', 'the discarded bytes are gone, the rest in order')
  // 3 MiB: each discard takes at most its length; together they take every byte.
  const big = Buffer.alloc(3 << 20, 0x41)
  client.write(big)
  let dropped = 0
  const deadline = Date.now() + 5000
  while (dropped < big.length && Date.now() < deadline) {
    if (inputQueueBytes(fd) === 0) {
      await new Promise((r) => setTimeout(r, 1))
      continue
    }
    const n = recv(fd, null, MSG_TRUNC | MSG_DONTWAIT, 1 << 20)
    assert.ok(n > 0 && n <= 1 << 20)
    dropped += n
  }
  assert.equal(dropped, big.length)
  client.end()
  await until(() => {
    try {
      return recv(fd, Buffer.alloc(1), MSG_DONTWAIT) === 0
    } catch {
      return false
    }
  })
})

test('tcp: no buffer and no MSG_TRUNC is EFAULT, and the bytes stay queued', async (t) => {
  const { fd, client } = await quietTcp(t)
  client.write('xyz')
  await until(() => inputQueueBytes(fd) === 3)
  throwsSystemError(() => recv(fd, null, MSG_DONTWAIT, 3), 'EFAULT', 'recvmsg')
  assert.equal(inputQueueBytes(fd), 3)
  const out = Buffer.alloc(3)
  assert.equal(recv(fd, out, MSG_DONTWAIT), 3)
  assert.equal(out.toString(), 'xyz')
})

test('udp: MSG_TRUNC gives the full length and copies what fits; no buffer drops a datagram', async (t) => {
  const { fd, sendAll } = await quietUdpPair(t)
  const first = Buffer.alloc(1000, 0x61)
  first.write('head', 0)
  await sendAll([first, Buffer.from('second'), Buffer.alloc(0)])
  await until(() => inputQueueBytes(fd) === 1000)
  const head = Buffer.alloc(64)
  assert.equal(recv(fd, head, MSG_TRUNC | MSG_DONTWAIT), 1000, 'the datagram\'s full length')
  assert.equal(head.subarray(0, 4).toString(), 'head')
  assert.equal(recv(fd, null, MSG_TRUNC | MSG_DONTWAIT), 6, 'dropped whole, its length returned')
  assert.equal(recv(fd, Buffer.alloc(8), MSG_DONTWAIT), 0, 'an empty datagram')
  throwsSystemError(() => recv(fd, head, MSG_DONTWAIT), 'EAGAIN', 'recvmsg')
})

test('recv argument errors: coded, before any syscall', (t) => {
  const check = (fn: () => unknown, code: string) => assert.throws(fn, (e: NodeJS.ErrnoException) => e.code === code)
  check(() => recv(-1, null), 'ERR_OUT_OF_RANGE')
  check(() => recv('3' as unknown as number, null), 'ERR_INVALID_ARG_TYPE')
  check(() => recv(0, Buffer.alloc(4), 0, 4), 'ERR_INVALID_ARG_TYPE')
  check(() => recv(0, 'abc' as unknown as Buffer, 0), 'ERR_INVALID_ARG_TYPE')
  check(() => recv(0, null, -1), 'ERR_OUT_OF_RANGE')
  check(() => recv(0, null, 0, -1), 'ERR_OUT_OF_RANGE')
  const ab = new ArrayBuffer(8)
  structuredClone(ab, { transfer: [ab] })
  check(() => recv(0, ab, 0), 'ERR_INVALID_STATE')
  check(() => dup(-1), 'ERR_OUT_OF_RANGE')
  t.diagnostic('a pipe is not a socket')
  const p = native.pipe()
  try {
    throwsSystemError(() => recv(p.readFd, Buffer.alloc(1), MSG_DONTWAIT), 'ENOTSOCK', 'recvmsg')
  } finally {
    native.closeFd(p.readFd)
    native.closeFd(p.writeFd)
  }
  throwsSystemError(() => dup(p.readFd), 'EBADF', 'fcntl')
})
