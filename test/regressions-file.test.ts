// Issue 10 regressions, file sends and bare-fd calls: one test per defect, asserting
// /work/wt/CONTRACT.md. Every wait has a deadline, so a hang fails instead of stalling.
import * as assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { dup, inputQueueBytes, outputQueueBytes, pipe, receiveToFile, relay, sendFileZeroCopy, sendZeroCopy, spliceAsync, ZeroCopySocket } from '../lib'
import { native } from '../lib/native'
import { closeQuietly, openFdTargets, randomBytes, socketFd, tempDir } from './helpers'
import { errText, isCoded, exitWatchdog, MiB, receive, settleAll, sleep, tcpState, track, waitFor, waitAtMost, within, pairFor, wireVerdict } from './regress-util'

exitWatchdog()



function writeFile(t: { after(fn: () => void): void }, name: string, data: Buffer): string {
  const file = path.join(tempDir(t), name)
  fs.writeFileSync(file, data)
  return file
}

test('3. 50 bare-fd sendZeroCopy(fd) / sendFileZeroCopy(fd) calls all settle and leave no fd behind', { timeout: 10000 }, async (t) => {
  const fileData = randomBytes(20000, 301)
  const file = writeFile(t, 'f', fileData)
  // Warm up what the library creates once per process (the reactor's epoll fd).
  const warm = await pairFor(t)
  await within(3000, sendZeroCopy(warm.client, Buffer.from('w')), 'warm-up send')
  await within(3000, sendFileZeroCopy(warm.client, file), 'warm-up file send')
  await within(3000, ZeroCopySocket.from(warm.client).close(), 'warm-up close')

  const pair = await pairFor(t)
  const got = receive(pair.server)
  const fd = pair.clientFd
  // New fds only: one the warm-up still held may close meanwhile, which is no leak.
  const baseline = openFdTargets()
  const added = () => [...openFdTargets()].filter(([fd, target]) => baseline.get(fd) !== target).length
  const calls = []
  const expected: Buffer[] = []
  for (let i = 0; i < 25; i++) {
    const b = randomBytes(1000, 3000 + i)
    expected.push(b, fileData)
    calls.push(track(() => sendZeroCopy(fd as never, b)))
    calls.push(track(() => sendFileZeroCopy(fd as never, file)))
  }
  await settleAll(calls, 6000)
  const threw = calls.filter((c) => c.threw !== undefined).length
  const pending = calls.filter((c) => c.state === 'pending').length
  const rejected = calls.filter((c) => c.state === 'rejected')
  let extraFds = added()
  const deadline = Date.now() + 1000
  while (extraFds !== 0 && Date.now() < deadline) {
    await sleep(20)
    extraFds = added()
  }
  if (pending === 0) {
    pair.client.end()
    await waitAtMost(2000, got.done)
  }
  assert.deepEqual(
    { threw, pending, rejected: rejected.map((c) => errText(c.error)), extraFds },
    { threw: 0, pending: 0, rejected: [], extraFds: 0 },
    '50 bare-fd calls: every one settles, and the fds they made are closed',
  )
  assert.equal(wireVerdict(got.buffer(), Buffer.concat(expected)), 'exact', 'the bytes of the 50 calls, in call order')
})

test('5. sendFileZeroCopy takes its place at call time', { timeout: 10000 }, async (t) => {
  await t.test('a socket.write and a send made right after the call follow the whole file', async (t) => {
    const pair = await pairFor(t)
    const got = receive(pair.server)
    const data = randomBytes(3 * MiB, 501)
    const file = writeFile(t, 'a', data)
    const zc = ZeroCopySocket.from(pair.client)
    const sending = track(() => sendFileZeroCopy(pair.client, file))
    const write = track(() => new Promise<void>((resolve, reject) => pair.client.write('TAIL', (e) => (e ? reject(e) : resolve()))))
    const sent = track(() => zc.send(Buffer.from('SEND')))
    await settleAll([sending, write, sent], 5000)
    pair.client.end()
    await waitAtMost(2000, got.done)
    const wire = got.buffer()
    assert.deepEqual({ file: sending.state, write: write.state, send: sent.state }, { file: 'resolved', write: 'resolved', send: 'resolved' })
    assert.equal(
      wireVerdict(wire, Buffer.concat([data, Buffer.from('TAILSEND')])),
      'exact',
      `file, then TAIL, then SEND (TAIL found at byte ${wire.indexOf('TAIL')}, SEND at ${wire.indexOf('SEND')})`,
    )
  })
  await t.test('two file sends back to back: all of A, then all of B', async (t) => {
    const pair = await pairFor(t)
    const got = receive(pair.server)
    const size = 8 * MiB
    const fileA = writeFile(t, 'A', Buffer.alloc(size, 'a'))
    const fileB = writeFile(t, 'B', Buffer.alloc(size, 'b'))
    const a = track(() => sendFileZeroCopy(pair.client, fileA, { windowSize: MiB }))
    const b = track(() => sendFileZeroCopy(pair.client, fileB, { windowSize: MiB }))
    await settleAll([a, b], 6000)
    pair.client.end()
    await waitAtMost(2000, got.done)
    const wire = got.buffer()
    let runs = 0
    for (let i = 0; i < wire.length; i++) if (i === 0 || wire[i] !== wire[i - 1]) runs++
    assert.deepEqual({ a: a.state, b: b.state }, { a: 'resolved', b: 'resolved' })
    assert.deepEqual({ bytes: wire.length, runs, first: String.fromCharCode(wire[0] ?? 0) }, { bytes: 2 * size, runs: 2, first: 'a' })
  })
})

test('7. abort: a stalled peer settles promptly; a reading peer gets nothing queued after the abort', { timeout: 10000 }, async (t) => {
  await t.test('stalled peer: AbortError promptly, then the connection is reset', async (t) => {
    const pair = await pairFor(t)
    pair.server.pause()
    const file = writeFile(t, 'f', randomBytes(32 * MiB, 701))
    const ac = new AbortController()
    const sending = track(() => sendFileZeroCopy(pair.client, file, { signal: ac.signal, windowSize: 4 * MiB }))
    await sleep(200)
    assert.equal(sending.state, 'pending', 'precondition: the stalled peer holds the send up')
    const stateAfter = () => sending.state as string // track() updates it later
    const t0 = Date.now()
    ac.abort()
    await settleAll([sending], 3000)
    const ms = Date.now() - t0
    assert.ok(stateAfter() === 'rejected' && ms < 1000, `after abort: ${stateAfter()} after ${ms} ms (want a prompt AbortError)`)
    assert.equal(sending.error?.name, 'AbortError', errText(sending.error))
    assert.equal(sending.error?.code, 'ABORT_ERR')
    // Part of the file went out: the peer must not take a cut body for a whole one, so
    // the connection is reset (the peer's end of it leaves the kernel's table). Node's
    // reader cannot tell: after a reset it still reads the queued bytes, then 'end'.
    const ports = [pair.server.localPort!, pair.server.remotePort!] as const
    let state = tcpState(...ports)
    const deadline = Date.now() + 1000
    while (state !== 'absent' && Date.now() < deadline) {
      await sleep(10)
      state = tcpState(...ports)
    }
    assert.equal(state, 'absent', `the peer's connection after the abort: ${state} (a reset removes it)`)
  })
  await t.test('reading peer, 256 MiB sparse file: no more arrives than was in the kernel at the abort', async (t) => {
    const pair = await pairFor(t)
    const size = 256 * MiB
    const file = path.join(tempDir(t), 'sparse')
    fs.writeFileSync(file, '')
    fs.truncateSync(file, size) // all holes: cheap to map, nothing on disk
    const serverFd = socketFd(pair.server)
    const ac = new AbortController()
    const at = { received: 0, inKernel: 0 }
    const got = receive(pair.server, false)
    pair.server.on('data', () => {
      if (ac.signal.aborted || got.bytes < 4 * MiB) return
      at.received = got.bytes
      at.inKernel = outputQueueBytes(pair.clientFd) + inputQueueBytes(serverFd)
      ac.abort()
    })
    const sending = track(() => sendFileZeroCopy(pair.client, file, { signal: ac.signal }))
    await within(3000, waitFor('the abort', () => ac.signal.aborted, 3000), 'the peer to read 4 MiB')
    await settleAll([sending], 4000)
    await waitAtMost(500, got.done)
    const late = got.bytes - at.received
    assert.equal(sending.state, 'rejected', `the send after abort: ${sending.state}`)
    assert.equal(sending.error?.name, 'AbortError', errText(sending.error))
    assert.ok(
      got.bytes < size && late <= at.inKernel + MiB,
      `the peer got ${(got.bytes / MiB).toFixed(1)} MiB of ${size / MiB}: ${(late / MiB).toFixed(1)} MiB after the abort, ` +
        `when the kernel held ${(at.inKernel / MiB).toFixed(1)} MiB`,
    )
  })
})

test('11. files with no size in fstat (a /proc file, a pipe) send their bytes; a dgram socket is refused', { timeout: 10000 }, async (t) => {
  const sendAndRead = async (t: { after(fn: () => unknown): void }, source: string | number) => {
    const pair = await pairFor(t)
    const got = receive(pair.server)
    const r = track(() => sendFileZeroCopy(pair.client, source))
    await settleAll([r], 3000)
    if (r.state !== 'pending') pair.client.end()
    await waitAtMost(1000, got.done)
    return { r, wire: got.buffer() }
  }
  await t.test('/proc files (fstat size 0): the bytes a read gives', async (t) => {
    assert.equal(fs.statSync('/proc/self/status').size, 0, 'precondition: the kernel reports size 0')
    const cmdline = await sendAndRead(t, '/proc/self/cmdline') // stable content: compared exactly
    assert.equal(cmdline.r.state, 'resolved', errText(cmdline.r.error))
    assert.equal(wireVerdict(cmdline.wire, fs.readFileSync('/proc/self/cmdline')), 'exact')
    assert.equal(cmdline.r.value!.bytes, cmdline.wire.length)
    const status = await sendAndRead(t, '/proc/self/status') // counters change between reads: compare the keys
    assert.equal(status.r.state, 'resolved', errText(status.r.error))
    const r = status.r.value!
    assert.ok(r.bytes > 0 && r.bytes === status.wire.length, `result says ${r.bytes} bytes, the peer got ${status.wire.length}`)
    const keys = (s: string) => s.split('\n').map((l) => l.split(':')[0])
    const now = fs.readFileSync('/proc/self/status', 'utf8')
    assert.deepEqual(keys(status.wire.toString()), keys(now), 'the same lines as /proc/self/status')
    assert.match(status.wire.toString(), new RegExp(`^Pid:\\s+${process.pid}$`, 'm'))
    assert.deepEqual({ zeroCopy: r.zeroCopy, copied: r.copied, fallback: typeof r.fallback }, { zeroCopy: false, copied: true, fallback: 'string' })
  })
  await t.test("a pipe's read end whose writer closed: exactly the bytes written", async (t) => {
    const data = randomBytes(40000, 1101)
    const p = pipe()
    t.after(() => closeQuietly(p.readFd))
    fs.writeSync(p.writeFd, data) // fits the 64 KiB pipe buffer
    fs.closeSync(p.writeFd)
    const { r, wire } = await sendAndRead(t, p.readFd)
    assert.equal(r.state, 'resolved', errText(r.error))
    assert.deepEqual({ bytes: r.value!.bytes, wire: wireVerdict(wire, data) }, { bytes: data.length, wire: 'exact' })
  })
  await t.test('a connected dgram socket: TypeError ERR_INVALID_ARG_TYPE, nothing sent', async (t) => {
    const receiver = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve))
    const sender = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => sender.connect(receiver.address().port, '127.0.0.1', resolve))
    t.after(() => {
      sender.close()
      receiver.close()
    })
    let datagrams = 0
    receiver.on('message', () => datagrams++)
    const problems: string[] = []
    for (const size of [300 * 1024, 100]) {
      const r = track(() => sendFileZeroCopy(sender, writeFile(t, `d${size}`, randomBytes(size, size))))
      await settleAll([r], 3000)
      const e = r.error
      if (!(r.state === 'rejected' && isCoded(e, TypeError, 'ERR_INVALID_ARG_TYPE')))
        problems.push(`${size} B file: ${r.state} ${e ? errText(e) : JSON.stringify(r.value)}`)
    }
    await sleep(100)
    assert.deepEqual({ problems, datagrams }, { problems: [], datagrams: 0 })
  })
})

// Private fds (native/private-fds.h): a stale number the caller closed a moment ago
// must fail with EBADF, not name a duplicate the package made in the same call. Found
// by the long fuzz (seed 2074298115): sendFileZeroCopy(tcp, <just-closed fd>) resolved
// with 0 bytes, read from the socket duplicate that attach had just put at that number.
test('a just-closed file fd is EBADF, never a private duplicate made in the same call', { timeout: 10000 }, async (t) => {
  const file = writeFile(t, 'stale', randomBytes(4096, 77))
  const outcomes: string[] = []
  for (let i = 0; i < 3; i++) {
    const pair = await pairFor(t) // a socket not attached yet: the call makes its duplicate
    const got = receive(pair.server)
    const stale = fs.openSync(file, 'r')
    fs.closeSync(stale)
    const r = track(() => sendFileZeroCopy(pair.client, stale))
    await settleAll([r], 3000)
    pair.client.end()
    await waitAtMost(2000, got.done)
    outcomes.push(`${r.state} ${r.error ? errText(r.error) : JSON.stringify(r.value)}; wire ${got.bytes} B`)
  }
  for (const o of outcomes) assert.match(o, /^rejected .*EBADF.*; wire 0 B$/)
})

test('the package keeps its own fds above 1024 and refuses them as a caller\'s fd (EBADF)', { timeout: 10000 }, async (t) => {
  const pair = await pairFor(t)
  const got = receive(pair.server)
  await within(3000, sendZeroCopy(pair.client, Buffer.from('attach')), 'first send')
  // The socket's private duplicate: another fd naming the same socket inode.
  const target = fs.readlinkSync(`/proc/self/fd/${socketFd(pair.client)}`)
  const dups = [...openFdTargets()].filter(([fd, link]) => link === target && Number(fd) !== socketFd(pair.client)).map(([fd]) => Number(fd))
  assert.ok(dups.length >= 1, `no private duplicate of ${target}`)
  for (const fd of dups) assert.ok(fd >= 1024, `private duplicate at ${fd}`)
  // Named by a caller, a private fd is not theirs to use: refused, nothing sent on it.
  const other = await pairFor(t)
  const r = track(() => sendFileZeroCopy(other.client, dups[0]!))
  await settleAll([r], 3000)
  assert.equal(r.state, 'rejected')
  assert.match(errText(r.error), /EBADF/)
  assert.throws(() => dup(dups[0]!), { code: 'EBADF', syscall: 'fcntl' }, 'raw.dup refuses it too')
  pair.client.end()
  await waitAtMost(2000, got.done)
  assert.equal(got.bytes, 6)
})

test('the private-fd registry lists only open fds: closed duplicates leave it (file sends, relays, uploads, async calls)', { timeout: 15000 }, async (t) => {
  const file = writeFile(t, 'reg', randomBytes(100000, 78))
  const stale = () => native.privateFds().filter((fd) => !fs.existsSync(`/proc/self/fd/${fd}`))
  const before = new Set(native.privateFds())
  // A relay with a length, and an upload: their duplicates and pipes go with them.
  const a = await pairFor(t)
  const b = await pairFor(t)
  const relayed = receive(b.server)
  a.server.write(Buffer.alloc(5000, 1))
  await within(5000, relay(a.client, b.client, { direction: 'a->b', length: 5000, mechanism: 'splice' }), 'relay')
  const up = await pairFor(t)
  up.server.end(Buffer.alloc(3000, 2))
  await within(5000, receiveToFile(up.client, path.join(tempDir(t), 'up')), 'upload')
  // An async call on the thread pool: its duplicates are closed on completion.
  const p = pipe()
  t.after(() => [p.readFd, p.writeFd].forEach(closeQuietly))
  fs.writeSync(p.writeFd, Buffer.alloc(10, 3))
  const sink = pipe()
  t.after(() => [sink.readFd, sink.writeFd].forEach(closeQuietly))
  assert.equal(await within(5000, spliceAsync(p.readFd, null, sink.writeFd, null, 10), 'spliceAsync'), 10)
  // Last, so that no later private fd reuses its number: a file send by fd, whose
  // duplicate is closed when the send ends.
  const pair = await pairFor(t)
  const got = receive(pair.server)
  const fd = fs.openSync(file, 'r')
  t.after(() => closeQuietly(fd))
  await within(5000, sendFileZeroCopy(pair.client, fd), 'file send by fd')
  pair.client.end()
  await waitAtMost(2000, got.done)
  assert.equal(got.bytes, 100000)
  await waitFor('the relay and upload duplicates closed', () => stale().length === 0 && native.privateFds().filter((fd) => !before.has(fd)).length <= 2, 3000).catch(() => {})
  assert.deepEqual(stale(), [], 'registered private fds that are closed')
  // What stays: the sockets' private duplicates of attached sockets (pair.client), and
  // the relay thread's epoll and eventfd; nothing per finished call.
  const added = native.privateFds().filter((fd) => !before.has(fd))
  assert.ok(added.length <= 4, `private fds left after the calls: ${added.join(',')}`)
  assert.ok(relayed.bytes >= 0)
})
