// Opening the file of sendFileZeroCopy: a cached regular file on a local mount is
// opened on the JS thread without blocking (native/file-open.cc), so a send never
// waits for the thread pool; everything else is opened there, as Node's fs does, with
// Node's own errors.
import * as assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { sendFileZeroCopy } from '../lib'
import { native } from '../lib/native'
import { collect, randomBytes, tcpPair, tempDir } from './helpers'
import { sleep, within } from './regress-util'

/** Whether the file opens on this thread (waiting a little: its dentries may be new). */
async function opensInline(file: string): Promise<boolean> {
  const until = Date.now() + 3000
  while (Date.now() < until) {
    const fd = native.openCached(file)
    if (fd >= 0) {
      native.closeFd(fd)
      return true
    }
    await sleep(10)
  }
  return false
}

/**
 * Occupies every thread-pool thread: each opens a FIFO for reading, which blocks until
 * a writer comes. release() brings the writers and waits for the opens to finish.
 */
function saturateThreadPool(): { release(): Promise<void> } {
  // Its own directory: a test's temp dir may be removed before release() runs, and a
  // reader blocked on a removed FIFO would hold its thread for good.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerocopy-pool-'))
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4)
  const fifos = Array.from({ length: threads + 2 }, (_, i) => path.join(dir, `fifo-${i}`))
  for (const f of fifos) execFileSync('mkfifo', [f])
  const opens = fifos.map((f) => fs.promises.open(f, 'r'))
  return {
    async release() {
      // A writer that opens with O_NONBLOCK succeeds only once a reader is there; the
      // opens still queued behind the pool get theirs when their turn comes (bounded).
      const writers: number[] = []
      const pending = new Set(fifos)
      const until = Date.now() + 5000
      while (pending.size > 0 && Date.now() < until) {
        for (const f of pending) {
          try {
            writers.push(fs.openSync(f, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK))
            pending.delete(f)
          } catch {
            // ENXIO: no reader yet
          }
        }
        await sleep(5)
      }
      const handles = await within(5000, Promise.all(opens), 'the FIFO opens').catch(() => [])
      for (const handle of handles) await handle.close()
      for (const w of writers) fs.closeSync(w)
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

test('a cached file goes out while every thread-pool thread is blocked (no trip to the pool)', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'body')
  const body = randomBytes(200_000, 7)
  fs.writeFileSync(file, body)
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  assert.equal((await sendFileZeroCopy(pair.client, file)).bytes, body.length)
  if (!(await opensInline(file))) {
    t.skip(`${dir} is not on a local filesystem here (or the kernel lacks openat2 RESOLVE_CACHED, statmount, AT_HANDLE_MNT_ID_UNIQUE)`)
    pair.client.end()
    await received
    return
  }
  const pool = saturateThreadPool()
  let released = false
  t.after(() => (released ? undefined : pool.release()))
  await sleep(50) // the FIFO opens have taken every thread
  const byPath = await within(3000, sendFileZeroCopy(pair.client, file), 'sendFileZeroCopy(path) with the pool blocked')
  const fd = fs.openSync(file, 'r')
  const byFd = await within(3000, sendFileZeroCopy(pair.client, fd), 'sendFileZeroCopy(fd) with the pool blocked').finally(() =>
    fs.closeSync(fd),
  )
  assert.equal(byPath.bytes, body.length)
  assert.equal(byFd.bytes, body.length)
  released = true
  await pool.release()
  pair.client.end()
  const got = await received
  assert.equal(got.length, 3 * body.length)
  for (let k = 0; k < 3; k++) assert.ok(got.subarray(k * body.length, (k + 1) * body.length).equals(body), `copy ${k} intact`)
})

test('what cannot open without blocking takes the thread pool: a FIFO, a symlink, an empty file, /proc, and errors in Node words', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'data')
  fs.writeFileSync(file, 'hello file')
  const link = path.join(dir, 'link')
  fs.symlinkSync(file, link)
  const empty = path.join(dir, 'empty')
  fs.writeFileSync(empty, '')
  const fifo = path.join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])

  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  assert.equal((await sendFileZeroCopy(pair.client, file)).bytes, 10)
  assert.equal((await sendFileZeroCopy(pair.client, link)).bytes, 10)
  assert.equal((await sendFileZeroCopy(pair.client, empty)).bytes, 0)
  // A FIFO opened on this thread would block it until a writer came: it must not be.
  const fromFifo = sendFileZeroCopy(pair.client, fifo)
  await sleep(20)
  const writer = fs.createWriteStream(fifo)
  writer.end('from the fifo')
  assert.equal((await fromFifo).bytes, 13)
  const proc = await sendFileZeroCopy(pair.client, '/proc/self/stat')
  assert.ok(proc.bytes > 0)
  assert.equal(proc.mechanism, 'read+copy')

  // The same errors as Node's own open.
  for (const bad of [path.join(dir, 'missing'), dir, `${file}/below`]) {
    const expected = await fs.promises.open(bad, 'r').then(
      (h) => h.close().then(() => undefined),
      (err: NodeJS.ErrnoException) => err,
    )
    if (expected === undefined) {
      // a directory opens read-only: then mapping it fails, as before
      await assert.rejects(sendFileZeroCopy(pair.client, bad))
      continue
    }
    await assert.rejects(sendFileZeroCopy(pair.client, bad), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, expected.code)
      assert.equal(err.errno, expected.errno)
      assert.equal(err.syscall, expected.syscall)
      assert.equal(err.path, expected.path)
      return true
    })
  }
  pair.client.end()
  const got = await received
  assert.equal(got.toString('latin1', 0, 33), 'hello filehello filefrom the fifo')
  const open = fs.readdirSync('/proc/self/fd').flatMap((n) => {
    try {
      return [fs.readlinkSync(`/proc/self/fd/${n}`)]
    } catch {
      return [] // the readdir's own fd
    }
  })
  assert.deepEqual(open.filter((target) => target.startsWith(dir)), [], 'no fd of ours left on the files')
})

test('an HTTP response body given as an fd or a FileHandle arrives whole (the body is opened twice: for its length, then for the send)', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'body')
  const body = randomBytes(100_000, 11)
  fs.writeFileSync(file, body)
  const results: string[] = []
  const server = http.createServer((req, res) => {
    const source = req.url === '/handle' ? fs.promises.open(file) : Promise.resolve(fs.openSync(file, 'r'))
    void source.then(async (s) => {
      try {
        const r = await sendFileZeroCopy(res, s)
        results.push(`${req.url} ${r.bytes}`)
      } catch (err) {
        results.push(`${req.url} ${(err as NodeJS.ErrnoException).code}`)
      } finally {
        if (typeof s === 'number') fs.closeSync(s)
        else await s.close()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const { port } = server.address() as net.AddressInfo
  for (const url of ['/fd', '/handle']) {
    const got = await new Promise<Buffer>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: url, agent: false }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve(Buffer.concat(chunks)))
          res.on('aborted', () => reject(new Error(`${url}: the response was cut`)))
        })
        .on('error', reject)
    })
    assert.ok(got.equals(body), `${url}: the whole body`)
  }
  for (let i = 0; i < 100 && results.length < 2; i++) await sleep(10) // the server's side settles a moment later
  assert.deepEqual(results, ['/fd 100000', '/handle 100000'])
})

const python = (() => {
  try {
    execFileSync('python3', ['-c', 'import fcntl'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

test('a file another process holds a write lease on (Samba, nfsd): the loop keeps turning while the lease is broken', async (t) => {
  if (!python) return t.skip('needs python3 for the lease holder')
  const dir = tempDir(t)
  const file = path.join(dir, 'leased')
  fs.writeFileSync(file, 'leased bytes')
  if (!(await opensInline(file))) return t.skip(`${dir} is not on a local filesystem here`)
  // The holder takes a write lease, and gives it up 600 ms after the kernel asks it to.
  const holder = spawn('python3', ['-c', LEASE_HOLDER, file], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => holder.kill())
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.once('data', () => resolve())
    holder.once('exit', (code) => reject(new Error(`lease holder exited (${code})`)))
  })
  const pair = await tcpPair()
  t.after(() => pair.close())
  const received = collect(pair.server)
  let ticks = 0
  const ticker = setInterval(() => ticks++, 10)
  t.after(() => clearInterval(ticker))
  const t0 = Date.now()
  const sending = sendFileZeroCopy(pair.client, file)
  const syncMs = Date.now() - t0
  assert.ok(syncMs < 200, `the call returned after ${syncMs} ms: it must not wait for the lease on this thread`)
  const r = await within(10000, sending, 'the send of a leased file')
  assert.equal(r.bytes, 12)
  assert.ok(Date.now() - t0 >= 400, 'it waited for the lease break (on the thread pool)')
  assert.ok(ticks >= 20, `timers ran meanwhile (${ticks} ticks)`)
  pair.client.end()
  assert.equal((await received).toString(), 'leased bytes')
})

const LEASE_HOLDER = `
import fcntl, os, signal, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
broken = []
signal.signal(signal.SIGIO, lambda *a: broken.append(1))
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print('held', flush=True)
while not broken:
    time.sleep(0.01)
time.sleep(0.6)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
time.sleep(5)
`

test("Node's permission model: a path it does not allow is refused every time (only fs.open checks it)", async (t) => {
  const flag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission'
  const dir = tempDir(t)
  const secret = path.join(dir, 'secret')
  fs.writeFileSync(secret, 'SECRET')
  const allowed = path.join(dir, 'www')
  fs.mkdirSync(allowed)
  const root = path.join(__dirname, '..', '..')
  const script = `
    const net = require('node:net')
    const { sendFileZeroCopy } = require(${JSON.stringify(path.join(root, 'dist', 'lib'))})
    const server = net.createServer((s) => s.resume()).listen(0, '127.0.0.1', async () => {
      const client = net.connect(server.address().port, '127.0.0.1')
      await new Promise((r) => client.once('connect', r))
      const out = []
      for (let i = 0; i < 3; i++) {
        out.push(await sendFileZeroCopy(client, ${JSON.stringify(secret)}).then((r) => 'sent ' + r.bytes, (e) => e.code))
      }
      console.log(JSON.stringify(out))
      client.destroy()
      server.close()
    })`
  // node-gyp-build looks for /etc/alpine-release when it loads the addon.
  const net26 = process.allowedNodeEnvironmentFlags.has('--allow-net') ? ['--allow-net'] : [] // Node 25+ guards the network too
  const r = spawnSync(process.execPath, [flag, '--allow-addons', ...net26, `--allow-fs-read=${root}`, `--allow-fs-read=${allowed}`, '--allow-fs-read=/etc/alpine-release', '-e', script], {
    encoding: 'utf8',
    timeout: 30000,
  })
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout.trim()), ['ERR_ACCESS_DENIED', 'ERR_ACCESS_DENIED', 'ERR_ACCESS_DENIED'])
})
