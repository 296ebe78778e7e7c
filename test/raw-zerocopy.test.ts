// The raw MSG_ZEROCOPY calls, one to one with the kernel: ids, ranges, COPIED.
import * as assert from 'node:assert/strict'
import { test } from 'node:test'
import { constants, dup, readErrorQueue, send, setZeroCopy } from '../lib'
import { native } from '../lib/native'
import { collect, tcpPair } from './helpers'

test('raw send with MSG_ZEROCOPY: each call takes the next id; completions name them', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  const fd = dup(pair.clientFd) // ours to use, whatever Node does with its fd
  t.after(() => native.closeFd(fd))
  setZeroCopy(fd, true)
  const buf = Buffer.alloc(4096, 7)
  for (let i = 0; i < 5; i++) assert.equal(send(fd, buf, constants.MSG_ZEROCOPY), 4096)
  const ids = new Set<number>()
  const deadline = Date.now() + 2000
  while (ids.size < 5 && Date.now() < deadline) {
    for (const e of readErrorQueue(fd)) {
      assert.equal(e.origin, constants.SO_EE_ORIGIN_ZEROCOPY)
      assert.equal(e.errno, 0)
      assert.ok(e.code & constants.SO_EE_CODE_ZEROCOPY_COPIED, 'loopback copies')
      for (let id = e.info; id <= e.data; id++) ids.add(id)
    }
    await new Promise((r) => setTimeout(r, 5))
  }
  assert.deepEqual([...ids].sort(), [0, 1, 2, 3, 4])
  assert.deepEqual(readErrorQueue(fd), [], 'queue drained')
  pair.client.end()
  assert.equal((await received).length, 5 * 4096)
})

test('raw send errors are SystemErrors; SO_ZEROCOPY on a pipe is ENOTSOCK', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  assert.throws(() => send(pair.clientFd, Buffer.alloc(1), 0xffffffff), { syscall: 'sendmsg' })
  const p = native.pipe()
  t.after(() => {
    native.closeFd(p.readFd)
    native.closeFd(p.writeFd)
  })
  assert.throws(() => setZeroCopy(p.writeFd, true), { code: 'ENOTSOCK', syscall: 'setsockopt' })
  assert.throws(() => readErrorQueue(p.readFd), { code: 'ENOTSOCK', syscall: 'recvmsg' })
})
