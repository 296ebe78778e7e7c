// sendFileZeroCopy: the release promise that sendfile(2) cannot give, over loopback
// TCP and through Node's http server, with truncation, reset and abort mid-send.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { test } from 'node:test'
import { outputQueueBytes, sendfile, sendFileZeroCopy, ZeroCopySocket } from '../lib'
import { fileHandler } from '../examples/http-file-server'
import { collect, collectUntilClose, fileZcMechanism, outcome, randomBytes, sha256, tcpPair, tempDir, unixPair } from './helpers'

const MiB = 1024 * 1024
// Small enough that the paused reader's socket keeps the sender's pages as they are:
// past its small initial receive buffer the kernel collapses (copies) the queue, and
// raw sendfile would then look safe by accident.
const STALE_SIZE = 16 * 1024
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Overwrites a file in place (same page-cache pages, no truncation). */
function overwriteInPlace(file: string, byte: string, length: number): void {
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.alloc(length, byte), 0, length, 0)
  fs.closeSync(fd)
}

test('stale read: after sendFileZeroCopy resolves, overwriting the file cannot change what the peer reads', async (t) => {
  for (const size of [STALE_SIZE, 1024 * 1024]) {
    const file = path.join(tempDir(t), 'a')
    fs.writeFileSync(file, Buffer.alloc(size, 'A'))
    const pair = await tcpPair()
    t.after(() => pair.close())
    pair.server.pause() // the reader has not read anything yet
    const received = collect(pair.server)
    const sending = sendFileZeroCopy(pair.client, file, { socketOptions: { copiedThreshold: Infinity } })
    if (size > STALE_SIZE) {
      await sleep(100) // more than the receive window: it cannot resolve until the reader reads
      pair.server.resume()
    }
    const r = await sending
    assert.equal(r.bytes, size)
    assert.equal(r.mechanism, fileZcMechanism)
    assert.equal(r.copied, true, 'loopback: the kernel reported its copy')
    overwriteInPlace(file, 'B', size)
    pair.server.resume()
    pair.client.end()
    const got = await received
    assert.equal(got.length, size)
    assert.ok(got.every((b) => b === 0x41), `the peer read the original ${size} bytes`)
  }
})

test('the same scenario with raw sendfile: the peer reads the new bytes (why the Promise exists)', async (t) => {
  const file = path.join(tempDir(t), 'a')
  fs.writeFileSync(file, Buffer.alloc(STALE_SIZE, 'A'))
  const fd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(fd))
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  let sent = 0
  while (sent < STALE_SIZE) sent += sendfile(pair.clientFd, fd, sent, STALE_SIZE - sent)
  const deadline = Date.now() + 2000
  while (outputQueueBytes(pair.clientFd) > 0 && Date.now() < deadline) await sleep(5)
  assert.equal(outputQueueBytes(pair.clientFd), 0, 'every byte acknowledged')
  overwriteInPlace(file, 'B', STALE_SIZE)
  const received = collect(pair.server)
  pair.server.resume()
  pair.client.end()
  const got = await received
  assert.equal(got.length, STALE_SIZE)
  assert.ok(got.every((b) => b === 0x42), 'an ACK is not a release: the reader got the overwritten bytes')
})

test('a file many windows long arrives intact with at most maxWindows mapped at a time', async (t) => {
  const file = path.join(tempDir(t), 'big')
  const data = randomBytes(24 * MiB + 777, 51)
  fs.writeFileSync(file, data)
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  // The kernel's view of our address space: mappings of this file, sampled.
  let peak = 0
  const sampler = setInterval(() => {
    const maps = fs.readFileSync('/proc/self/maps', 'utf8')
    peak = Math.max(peak, maps.split('\n').filter((l) => l.endsWith(file)).length)
  }, 1)
  const fh = await fs.promises.open(file, 'r')
  try {
    const r = await sendFileZeroCopy(pair.client, fh, { windowSize: MiB, maxWindows: 3 })
    assert.equal(r.bytes, data.length)
    assert.equal(r.windows, 25)
  } finally {
    clearInterval(sampler)
    await fh.close()
  }
  pair.client.end()
  assert.equal(sha256(await received), sha256(data))
  assert.ok(peak >= 1 && peak <= 3, `at most 3 windows mapped at once (saw ${peak})`)
  const after = fs.readFileSync('/proc/self/maps', 'utf8')
  assert.ok(!after.includes(file), 'every window unmapped')
})

test('a sparse file past 4 GiB, sent from an offset by fd, arrives intact', async (t) => {
  const file = path.join(tempDir(t), 'sparse')
  const fd = fs.openSync(file, 'w+')
  t.after(() => fs.closeSync(fd))
  fs.ftruncateSync(fd, 5 * 1024 * MiB)
  const marker = randomBytes(3 * MiB, 52)
  const at = 4 * 1024 * MiB + 12345
  fs.writeSync(fd, marker, 0, marker.length, at)
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  const r = await sendFileZeroCopy(pair.client, fd, { offset: at - 1000, length: marker.length + 2000, windowSize: MiB })
  assert.equal(r.bytes, marker.length + 2000)
  pair.client.end()
  const got = await received
  assert.equal(got.length, marker.length + 2000)
  assert.ok(got.subarray(0, 1000).every((b) => b === 0), 'the hole before the marker')
  assert.equal(sha256(got.subarray(1000, 1000 + marker.length)), sha256(marker))
})

/** A 32 MiB file of random bytes and a TCP pair whose reader is paused: a send that stays mid-way. */
async function midSend(t: { after(fn: () => void): void }, seed: number) {
  const file = path.join(tempDir(t), 'f')
  const data = randomBytes(32 * MiB, seed)
  fs.writeFileSync(file, data)
  const pair = await tcpPair()
  t.after(() => pair.close())
  pair.server.pause()
  return { file, data, pair }
}

test('a file truncated mid-send: a clear rejection, a reset connection, a live process', async (t) => {
  const { file, data, pair } = await midSend(t, 53)
  const received = collectUntilClose(pair.server)
  const sending = outcome(sendFileZeroCopy(pair.client, file, { windowSize: MiB, maxWindows: 2 }))
  await sleep(100) // two windows queued, the reader reads nothing
  fs.truncateSync(file, 2 * MiB)
  pair.server.resume()
  const r = await sending
  assert.equal(r.ok, false)
  const err = r.ok ? undefined : r.error
  assert.equal(err?.code, 'ERR_ZEROCOPY_FILE_TRUNCATED')
  assert.match(err?.message ?? '', /truncated/)
  const got = await received
  assert.ok(pair.client.destroyed, 'the socket was closed')
  // A FIN after a cut body could pass for a whole one: the connection is reset instead.
  assert.ok(got.error === undefined || got.error.code === 'ECONNRESET', String(got.error))
  assert.ok(got.data.length < data.length, 'the peer got less than the file')
  assert.deepEqual(got.data, data.subarray(0, got.data.length), 'and what it got is the file')
})

test('a peer reset mid-send rejects, and the process lives', async (t) => {
  const { file, pair } = await midSend(t, 54)
  pair.client.on('error', () => {})
  const sending = outcome(sendFileZeroCopy(pair.client, file, { windowSize: MiB, maxWindows: 2 }))
  await sleep(100)
  pair.server.resetAndDestroy()
  const r = await Promise.race([sending, sleep(10000).then(() => 'timeout' as const)])
  assert.notEqual(r, 'timeout')
  const settled = r as Awaited<typeof sending>
  assert.equal(settled.ok, false)
  assert.ok(['ECONNRESET', 'EPIPE', 'ERR_SOCKET_CLOSED'].includes(settled.ok ? '' : settled.error.code ?? ''))
})

test('abort mid-send with a stalled reader: rejects at once, nothing more is queued, the connection is reset', async (t) => {
  const { file, data, pair } = await midSend(t, 55)
  const ac = new AbortController()
  const received = collectUntilClose(pair.server)
  pair.server.pause() // stalled: the kernel keeps the queued windows
  const sending = outcome(sendFileZeroCopy(pair.client, file, { windowSize: MiB, maxWindows: 2, signal: ac.signal }))
  await sleep(100)
  const aborted = Date.now()
  ac.abort()
  const r = await sending
  assert.ok(Date.now() - aborted < 1000, 'settled promptly though the reader never read')
  assert.equal(r.ok, false)
  assert.equal(r.ok ? '' : r.error.name, 'AbortError')
  assert.ok(pair.client.destroyed, 'a cut body is not followed by more bytes on that connection')
  pair.server.resume()
  const got = await received
  // The kernel resets the connection; a Node reader that still had bytes queued when
  // the RST came reports that as an end (libuv), one that was reading as ECONNRESET.
  assert.ok(got.error === undefined || got.error.code === 'ECONNRESET', String(got.error))
  assert.ok(got.data.length < data.length, `less than the file (${got.data.length} bytes)`)
  assert.deepEqual(got.data, data.subarray(0, got.data.length))
})

test('abort before any byte went: rejects at once and the socket stays usable', async (t) => {
  const { file, pair } = await midSend(t, 57)
  const ac = new AbortController()
  const zc = ZeroCopySocket.from(pair.client)
  const first = zc.send(randomBytes(8 * MiB, 58)) // fills the paused reader's window
  const sending = outcome(sendFileZeroCopy(pair.client, file, { signal: ac.signal }))
  await sleep(50)
  ac.abort()
  const r = await sending
  assert.equal(r.ok ? '' : r.error.name, 'AbortError')
  assert.equal(pair.client.destroyed, false)
  const tail = Buffer.from('tail')
  const received = collect(pair.server)
  pair.server.resume()
  await first
  await zc.send(tail)
  pair.client.end()
  const got = await received
  assert.equal(got.length, 8 * MiB + tail.length, 'the first send and the tail, no byte of the file')
  assert.deepEqual(got.subarray(8 * MiB), tail)
})

test('through Node http: headers, then the body by sendFileZeroCopy, equal to the file', async (t) => {
  const dir = tempDir(t)
  const data = randomBytes(5 * MiB + 3, 56)
  fs.writeFileSync(path.join(dir, 'blob.bin'), data)
  const server = http.createServer(fileHandler(dir))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const port = (server.address() as { port: number }).port
  const agent = new http.Agent({ keepAlive: true })
  t.after(() => agent.destroy())
  const get = (p: string) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
        })
        .on('error', reject)
    })
  // Twice on one keep-alive connection: the second response follows the first intact.
  for (let i = 0; i < 2; i++) {
    const res = await get('/blob.bin')
    assert.equal(res.status, 200)
    assert.equal(res.headers['content-length'], String(data.length))
    assert.equal(sha256(res.body), sha256(data))
  }
  assert.equal((await get('/missing')).status, 404)
  assert.equal((await get('/../etc/passwd')).status, 404)
})

test('bad arguments reject before anything is sent', async (t) => {
  const pair = await tcpPair()
  t.after(() => pair.close())
  const file = path.join(tempDir(t), 'f')
  fs.writeFileSync(file, 'abc')
  await assert.rejects(sendFileZeroCopy(pair.client, file, { offset: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await assert.rejects(sendFileZeroCopy(pair.client, file, { offset: 10 }), { code: 'ERR_OUT_OF_RANGE' })
  await assert.rejects(sendFileZeroCopy(pair.client, path.join(tempDir(t), 'nope')), { code: 'ENOENT' })
  const r = await sendFileZeroCopy(pair.client, file, { offset: 1, length: 1 })
  assert.equal(r.bytes, 1)
  pair.client.end()
  assert.equal((await collect(pair.server)).toString(), 'b')
})

test('where SO_ZEROCOPY is refused (AF_UNIX) the copying path sends the file and says so', async (t) => {
  const dir = tempDir(t)
  const data = randomBytes(3 * MiB, 57)
  fs.writeFileSync(path.join(dir, 'f'), data)
  const { client, peer } = await unixPair(t)
  const received = collect(peer)
  const r = await sendFileZeroCopy(client, path.join(dir, 'f'), { windowSize: MiB })
  assert.deepEqual(
    { bytes: r.bytes, mechanism: r.mechanism, copied: r.copied, zeroCopy: r.zeroCopy },
    { bytes: data.length, mechanism: 'mmap+copy', copied: true, zeroCopy: false },
  )
  assert.match(r.fallback ?? '', /SO_ZEROCOPY is not supported/)
  client.end()
  assert.equal(sha256(await received), sha256(data))
})
