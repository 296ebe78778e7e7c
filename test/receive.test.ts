// receiveDatagrams (recvmmsg) and setReceiveBuffer on real loopback UDP sockets.
import * as assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import * as os from 'node:os'
import { test } from 'node:test'
import { inputQueueBytes, receiveDatagrams, setReceiveBuffer } from '../lib'
import { quietUdpPair } from './helpers'
import { native } from '../lib/native'

test('receiveDatagrams reads many datagrams in one call, cuts to the buffers, reports full lengths', async (t) => {
  const { fd, sendAll } = await quietUdpPair(t)
  const lengths = new Uint32Array(8)
  assert.equal(receiveDatagrams(fd, [Buffer.alloc(16)], lengths), 0, 'nothing queued: 0, not EAGAIN')
  const sent = [Buffer.from('alpha'), Buffer.alloc(0), Buffer.alloc(3000, 0x41), Buffer.from('omega')]
  await sendAll(sent)
  const deadline = Date.now() + 2000
  while (inputQueueBytes(fd) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2))
  const buffers = [Buffer.alloc(16), Buffer.alloc(16), Buffer.alloc(16), Buffer.alloc(0), Buffer.alloc(16)]
  const n = receiveDatagrams(fd, buffers, lengths)
  assert.equal(n, 4, 'all four in one call')
  assert.deepEqual([...lengths.subarray(0, 4)], [5, 0, 3000, 5], 'full lengths, also of the cut one and into an empty buffer')
  assert.equal(buffers[0]!.subarray(0, 5).toString(), 'alpha')
  assert.ok(buffers[2]!.equals(Buffer.alloc(16, 0x41)), 'the long one cut to its buffer')
  assert.equal(buffers[3]!.length, 0)
  assert.equal(receiveDatagrams(fd, buffers, lengths), 0, 'queue empty again')
})

test('receiveDatagrams takes no more than its buffers or lengths hold', async (t) => {
  const { fd, sendAll } = await quietUdpPair(t)
  await sendAll(Array.from({ length: 10 }, (_, i) => Buffer.from(`d${i}`)))
  await new Promise((r) => setTimeout(r, 50))
  const lengths = new Uint32Array(3)
  const buffers = Array.from({ length: 5 }, () => Buffer.alloc(4))
  assert.equal(receiveDatagrams(fd, buffers, lengths), 3, 'lengths has room for 3')
  assert.equal(receiveDatagrams(fd, buffers.slice(0, 2), new Uint32Array(8)), 2, 'two buffers')
  assert.equal(buffers[1]!.subarray(0, 2).toString(), 'd4', 'in order')
  assert.equal(receiveDatagrams(fd, buffers, new Uint32Array(8)), 5)
})

test('receiveDatagrams and setReceiveBuffer refuse bad arguments and report kernel errors', async (t) => {
  const { fd } = await quietUdpPair(t)
  assert.throws(() => receiveDatagrams(fd, [Buffer.alloc(1)], new Float64Array(1) as never), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => receiveDatagrams(fd, 'x' as never, new Uint32Array(1)), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => receiveDatagrams(fd, [1] as never, new Uint32Array(1)), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => receiveDatagrams('3' as never, [], new Uint32Array(1)), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => setReceiveBuffer(fd, -1), { code: 'ERR_OUT_OF_RANGE' })
  const unbound = dgram.createSocket('udp4')
  t.after(() => unbound.close())
  assert.throws(() => receiveDatagrams(unbound, [], new Uint32Array(1)), { code: 'ERR_INVALID_ARG_TYPE' }, 'no fd before bind')
  const p = native.pipe()
  native.closeFd(p.writeFd)
  assert.throws(() => receiveDatagrams(p.readFd, [Buffer.alloc(1)], new Uint32Array(1)), { code: 'ENOTSOCK', syscall: 'recvmmsg' })
  native.closeFd(p.readFd)
  assert.throws(() => receiveDatagrams(p.readFd, [Buffer.alloc(1)], new Uint32Array(1)), { code: 'EBADF', errno: -os.constants.errno.EBADF })
})

test('setReceiveBuffer: root goes past net.core.rmem_max, others are capped there', async (t) => {
  const s = dgram.createSocket('udp4')
  t.after(() => s.close())
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
  const rmemMax = Number((await import('node:fs')).readFileSync('/proc/sys/net/core/rmem_max', 'utf8'))
  const want = rmemMax * 4
  const got = setReceiveBuffer(s, want)
  assert.equal(s.getRecvBufferSize(), got, 'Node sees the same size')
  if (process.getuid?.() === 0) assert.equal(got, want * 2, 'SO_RCVBUFFORCE: the request, doubled by the kernel')
  else assert.equal(got, rmemMax * 2, 'SO_RCVBUF: capped at rmem_max, doubled')
})
