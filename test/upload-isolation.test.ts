// A file that cannot take its bytes never stalls anything else (issue 21, items 4 and 5):
// an upload whose write blocks (an ext4 image on a loop device, frozen with fsfreeze:
// the stand-in for a hung NFS/FUSE server or a dying disk) leaves an unrelated relay
// moving and settles its abort at once, never reading the socket again; a path whose
// open blocks (a frozen mount, a FIFO without a reader) is raced against the signal
// and its late fd closed; a FIFO or another non-regular file is refused with a code.
import * as assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import { before, test } from 'node:test'
import { Worker } from 'node:worker_threads'
import { receiveToFile, relay } from '../lib'
import { openFdTargets, randomBytes, tempDir } from './helpers'
import { assertNothingLeft, chain, closed, halfOpenPair, within } from './relay-util'
import { sleep, waitFor } from './regress-util'

const KiB = 1024
const MiB = 1024 * KiB

before(async () => {
  // The socket relays' thread (its epoll and eventfd) is made on first use and lives with the process.
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: 1 })
  c.client.write('x')
  await r
  await c.close()
})

function canFreeze(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount a loop device and freeze it'
  for (const tool of ['mkfs.ext4', 'fsfreeze', 'mount', 'umount']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
    } catch {
      return `${tool} is not installed`
    }
  }
  if (!fs.existsSync('/dev/loop-control')) return 'no loop devices here (/dev/loop-control)'
  return undefined
}

/** A fresh ext4 mounted in a temp dir; freeze()/thaw() it; unmounted at the test's end. */
function frozenMount(t: { after(fn: () => void): void }): { dir: string; freeze(): void; thaw(): void } {
  const base = fs.mkdtempSync('/tmp/zerocopy-frozen-')
  const image = path.join(base, 'image')
  const dir = path.join(base, 'mnt')
  fs.mkdirSync(dir)
  execFileSync('truncate', ['-s', '64M', image])
  execFileSync('mkfs.ext4', ['-q', image])
  execFileSync('mount', ['-o', 'loop', image, dir])
  let frozen = false
  const thaw = () => {
    if (frozen) execFileSync('fsfreeze', ['-u', dir])
    frozen = false
  }
  t.after(() => {
    thaw()
    // Lazy: a test that failed may still hold a file open on it.
    execFileSync('umount', ['-l', dir])
    fs.rmSync(base, { recursive: true, force: true })
  })
  return {
    dir,
    freeze: () => {
      execFileSync('fsfreeze', ['-f', dir])
      frozen = true
    },
    thaw,
  }
}

/** assertNothingLeft, once what ends on its own (a late write, a late open) had 5 s to. */
async function settled(fds: Map<string, string>, what: string): Promise<void> {
  for (const deadline = Date.now() + 5000; ; await sleep(20)) {
    try {
      return assertNothingLeft(fds)
    } catch (err) {
      if (Date.now() > deadline) throw Object.assign(err as Error, { message: `${what}: ${(err as Error).message}` })
    }
  }
}

/** Everything `s` emits as 'data' from now on. */
function gather(s: import('node:net').Socket): Buffer[] {
  const chunks: Buffer[] = []
  s.on('data', (c: Buffer) => chunks.push(c))
  return chunks
}

for (const mechanism of ['copy', 'splice'] as const) {
  test(`${mechanism}: a write blocked on a frozen filesystem stalls no other relay, and its abort settles at once`, { timeout: 30000 }, async (t) => {
    const why = canFreeze()
    if (why !== undefined) return t.skip(why)
    const fds = openFdTargets()
    const mnt = frozenMount(t)
    const file = path.join(mnt.dir, 'upload')
    const sent = randomBytes(3 * MiB, 7)
    const up = await halfOpenPair()
    const ac = new AbortController()
    const upload = receiveToFile(up.server, file, { signal: ac.signal, mechanism, bufferSize: 256 * KiB }).then(
      () => assert.fail('the upload resolved'),
      (err: NodeJS.ErrnoException & { bytes: number }) => err,
    )
    up.client.write(sent.subarray(0, MiB))
    await waitFor('the first MiB in the file', () => fs.existsSync(file) && fs.statSync(file).size === MiB)
    mnt.freeze()
    up.client.write(sent.subarray(MiB, 2 * MiB))
    await sleep(200) // the upload's thread now waits in its write

    // An unrelated socket relay keeps moving.
    const c = await chain()
    const relayed = relay(c.proxyIn, c.proxyOut, { direction: 'a->b', length: 64 * KiB })
    const got = gather(c.server)
    c.client.write(Buffer.alloc(64 * KiB, 5))
    await within(relayed, 3000, 'a relay while an upload write is blocked')
    await waitFor('the relayed bytes at the server', () => Buffer.concat(got).length === 64 * KiB, 3000)
    await c.close()

    // The abort settles at once, and the socket is Node's again: the thread never reads
    // another byte of it, so what the client sends from now on comes as 'data'.
    const before = Date.now()
    ac.abort()
    const err = await within(upload, 1000, 'the abort of an upload whose write is blocked')
    assert.ok(Date.now() - before < 1000)
    assert.equal(err.name, 'AbortError')
    assert.equal(err.bytes, MiB, 'bytes in the file when the abort settled')
    const tail = gather(up.server)
    up.client.end(sent.subarray(2 * MiB))
    await within(new Promise((resolve) => up.server.once('end', resolve)), 5000, "the socket's end, read by Node")

    // Thawed: the write that was blocked lands where it was going; no byte is lost or
    // written twice: the file then the bytes Node read are the stream.
    mnt.thaw()
    await waitFor('the late write to land', () => fs.statSync(file).size > MiB, 5000)
    await sleep(100)
    const inFile = fs.readFileSync(file)
    const afterwards = Buffer.concat(tail)
    assert.ok(inFile.length <= MiB + 256 * KiB, `the file holds at most one buffer more: ${inFile.length}`)
    assert.ok(inFile.equals(sent.subarray(0, inFile.length)), 'the file holds the stream from its start')
    assert.ok(afterwards.equals(sent.subarray(inFile.length)), `Node read the rest: ${afterwards.length} bytes`)
    await closed(up.client)
    await closed(up.server)
    await settled(fds, 'the upload thread to end')
  })
}

test('an HTTP request\'s body on the copy path: a client that goes during a blocked write settles the upload at once', { timeout: 30000 }, async (t) => {
  const why = canFreeze()
  if (why !== undefined) return t.skip(why)
  const mnt = frozenMount(t)
  const file = path.join(mnt.dir, 'chunked')
  const ac = new AbortController()
  t.after(() => ac.abort())
  let upload!: Promise<NodeJS.ErrnoException>
  const server = http.createServer((req) => {
    upload = receiveToFile(req, file, { signal: ac.signal }).then(
      () => assert.fail('the upload resolved'),
      (err: NodeJS.ErrnoException) => err,
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  client.on('error', () => {})
  await new Promise((resolve) => client.once('connect', resolve))
  // A chunked body goes through req as copies, written by the thread pool's FileHandle writes.
  client.write('POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n')
  const frame = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(64 * KiB, 'c'), Buffer.from('\r\n')])
  client.write(frame)
  await waitFor('the first chunk in the file', () => fs.existsSync(file) && fs.statSync(file).size === 64 * KiB)
  mnt.freeze()
  client.write(frame)
  await sleep(200) // a write now waits on the frozen mount
  const before = Date.now()
  client.destroy()
  const err = await within(upload, 1500, 'an upload whose client went during a blocked write')
  assert.ok(Date.now() - before < 1500, `settled ${Date.now() - before} ms after the client went`)
  assert.equal(err.code, 'ERR_STREAM_PREMATURE_CLOSE', String(err))
  assert.equal((err as { bytes?: number }).bytes, 64 * KiB, 'bytes in the file when it settled')
})

test('opening a path on a frozen mount is raced against the signal; the late fd is closed', { timeout: 30000 }, async (t) => {
  const why = canFreeze()
  if (why !== undefined) return t.skip(why)
  const fds = openFdTargets()
  const mnt = frozenMount(t)
  mnt.freeze()
  const { client, server } = await halfOpenPair()
  const ac = new AbortController()
  const upload = receiveToFile(server, path.join(mnt.dir, 'new'), { signal: ac.signal }).catch((e: Error) => e)
  await sleep(100)
  ac.abort()
  const err = (await within(upload, 1000, 'the abort of an upload whose open is blocked')) as Error
  assert.equal(err.name, 'AbortError')
  // The socket's reads were given back.
  const got = gather(server)
  client.write('after')
  await waitFor("Node reading the socket's bytes", () => Buffer.concat(got).toString() === 'after', 3000)
  mnt.thaw()
  await Promise.all([closed(client), closed(server)])
  await settled(fds, 'the late open to be closed')
})

test('aborted opens on a frozen mount, as many as the thread pool has threads, stall no other upload and no fs call', { timeout: 30000 }, async (t) => {
  const why = canFreeze()
  if (why !== undefined) return t.skip(why)
  const fds = openFdTargets()
  const mnt = frozenMount(t)
  mnt.freeze()
  // Enough blocked opens to hold every thread of libuv's pool, were they opened there.
  const poolSize = Number(process.env.UV_THREADPOOL_SIZE) || 4
  const blocked = []
  for (let i = 0; i < poolSize; i++) {
    const pair = await halfOpenPair()
    const ac = new AbortController()
    const upload = receiveToFile(pair.server, path.join(mnt.dir, `new-${i}`), { signal: ac.signal, length: 1000 }).catch((e: Error) => e)
    blocked.push({ ...pair, ac, upload })
  }
  await sleep(200) // each open now waits on the frozen mount
  for (const b of blocked) b.ac.abort()
  for (const b of blocked) assert.equal(((await within(b.upload, 1000, 'the abort of a blocked open')) as Error).name, 'AbortError')

  // An upload to a healthy path and the application's own thread-pool work go on.
  const dir = tempDir(t)
  const healthy = path.join(dir, 'healthy')
  const up = await halfOpenPair()
  const sent = randomBytes(1000, 3)
  const upload = receiveToFile(up.server, healthy, { length: 1000 })
  up.client.write(sent)
  assert.equal((await within(upload, 3000, 'an upload to a healthy path while opens on a frozen mount are blocked')).bytes, 1000)
  assert.ok(fs.readFileSync(healthy).equals(sent))
  await within(fs.promises.stat(dir), 1000, 'fs.promises.stat while opens on a frozen mount are blocked')

  mnt.thaw()
  await Promise.all([...blocked, up].flatMap((b) => [closed(b.client), closed(b.server)]))
  await settled(fds, 'the late opens to be closed')
  for (let i = 0; i < poolSize; i++) assert.ok(fs.existsSync(path.join(mnt.dir, `new-${i}`)), 'the late open made its file')
})

test('a worker terminated while its upload write is blocked ends at once; the upload thread cleans up after the thaw', { timeout: 30000 }, async (t) => {
  const why = canFreeze()
  if (why !== undefined) return t.skip(why)
  const fds = openFdTargets()
  const mnt = frozenMount(t)
  // Relays both ways and an upload into the mount, bytes flowing (test/fixtures/zerocopy-worker.ts).
  const worker = new Worker(path.join(__dirname, 'fixtures', 'zerocopy-worker.js'), {
    workerData: { mode: 'relay', upload: path.join(mnt.dir, 'upload') },
  })
  const ready = await within(new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  }), 10000, 'the worker')
  assert.equal(ready.error, undefined)
  mnt.freeze()
  await sleep(300) // the upload's thread now waits in its write
  const before = Date.now()
  await within(worker.terminate(), 3000, 'terminating a worker whose upload write is blocked')
  assert.ok(Date.now() - before < 2000, `terminate took ${Date.now() - before} ms`)
  mnt.thaw()
  await settled(fds, "the orphaned upload thread's fds")
})

test('a worker terminated while its uploads wait to open a path on a frozen mount ends at once; the late fds are closed', { timeout: 30000 }, async (t) => {
  const why = canFreeze()
  if (why !== undefined) return t.skip(why)
  const fds = openFdTargets()
  const mnt = frozenMount(t)
  mnt.freeze()
  const worker = new Worker(path.join(__dirname, 'fixtures', 'zerocopy-worker.js'), {
    workerData: { mode: 'open', upload: path.join(mnt.dir, 'upload') },
  })
  const ready = await within(new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  }), 10000, 'the worker')
  assert.equal(ready.error, undefined)
  const before = Date.now()
  await within(worker.terminate(), 3000, 'terminating a worker whose opens are blocked')
  assert.ok(Date.now() - before < 2000, `terminate took ${Date.now() - before} ms`)
  mnt.thaw()
  await settled(fds, 'the late opens of a terminated worker to be closed')
  for (let i = 0; i < 3; i++) assert.ok(fs.existsSync(path.join(mnt.dir, `upload-${i}`)), 'the late open made its file')
})

test('a FIFO path is refused with a code, with or without a reader, and never waits', { timeout: 20000 }, async (t) => {
  const fifo = path.join(tempDir(t), 'fifo')
  execFileSync('mkfifo', [fifo])
  const fds = openFdTargets()
  const { client, server } = await halfOpenPair()
  const ac = new AbortController()
  const err = (await within(receiveToFile(server, fifo, { signal: ac.signal }).catch((e: Error) => e), 2000, 'receiveToFile to a FIFO')) as NodeJS.ErrnoException
  assert.ok(err instanceof Error)
  assert.equal(err.code, 'ERR_ZEROCOPY_NOT_A_FILE', String(err))
  assert.match(err.message, /FIFO/)
  // With a reader the open succeeds, and the refusal comes from the file's type.
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  try {
    const err2 = (await within(receiveToFile(server, fifo).catch((e: Error) => e), 2000, 'receiveToFile to a read FIFO')) as NodeJS.ErrnoException
    assert.equal(err2.code, 'ERR_ZEROCOPY_NOT_A_FILE', String(err2))
  } finally {
    fs.closeSync(reader)
  }
  // The socket is Node's again.
  const got = gather(server)
  client.write('next')
  await waitFor('Node reading on', () => Buffer.concat(got).toString() === 'next', 3000)
  await Promise.all([closed(client), closed(server)])
  assertNothingLeft(fds)
})

test('a FIFO path with an aborting signal settles with the refusal', { timeout: 20000 }, async (t) => {
  const fifo = path.join(tempDir(t), 'fifo')
  execFileSync('mkfifo', [fifo])
  const { client, server } = await halfOpenPair()
  const ac = new AbortController()
  const p = receiveToFile(server, fifo, { signal: ac.signal }).catch((e: Error) => e)
  setTimeout(() => ac.abort(), 50)
  const err = (await within(p, 2000, 'receiveToFile to a FIFO, aborted')) as NodeJS.ErrnoException
  assert.ok(err.code === 'ERR_ZEROCOPY_NOT_A_FILE' || err.name === 'AbortError', String(err))
  await Promise.all([closed(client), closed(server)])
})
