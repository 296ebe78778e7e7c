// worker_threads: every native object (reactor, socket duplicates, file windows, thread
// pool work) belongs to the environment that made it and is torn down with it. A worker
// terminated with sends in flight, with file windows mapped or with async calls running
// must leave the process alive, with no fd and no mapping left behind.
//
// The main thread does not load the addon until the last test: then a worker's
// environment is the addon's only user, and Node (up to 24) dlclose()s it when the
// worker ends, as happens under thread pools (piscina and the like). Anything of ours
// still pending on the worker's loop at that point (a uv_close callback) would jump
// into unmapped code. So this file imports nothing from lib/ (nor ./helpers, which
// does) before that test.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { Worker } from 'node:worker_threads'

const fixture = path.join(__dirname, 'fixtures', 'zerocopy-worker.js')
const MiB = 1024 * 1024

interface WorkerData {
  mode: 'attach' | 'sending' | 'file' | 'async' | 'relay'
  file?: string
  upload?: string
  fileFd?: number
  devNullFd?: number
  sendFromFd?: boolean
  registered?: boolean
}

function openFds(): string[] {
  const out: string[] = []
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.push(`${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`)
    } catch {
      // the directory's own fd, closed by now
    }
  }
  return out
}

/** Lines of /proc/self/maps whose path ends with `suffix`. */
function mapsLines(suffix: string): number {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(suffix)).length
}

/** Starts a worker, waits until it holds what its mode makes, terminates it. */
async function startAndTerminate(data: WorkerData): Promise<Record<string, unknown>> {
  const worker = new Worker(fixture, { workerData: data })
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
    worker.once('exit', (code) => reject(new Error(`the worker exited (${code}) before it was ready`)))
  })
  if (typeof ready.error === 'string') throw new Error(`worker: ${ready.error}`)
  await worker.terminate()
  return ready
}

/** Asserts that no fd the main thread did not have before is left open. */
function assertNoNewFds(before: string[]): void {
  const added = openFds().filter((fd) => !before.includes(fd))
  assert.deepEqual(added, [], 'fds left open after the workers ended')
}

test('workers terminated while holding native state: the process lives, nothing leaks', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerocopy-workers-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'file')
  fs.writeFileSync(file, Buffer.alloc(8 * MiB, 0x62))
  const fileFd = fs.openSync(file, 'r')
  const devNullFd = fs.openSync('/dev/null', 'w')
  t.after(() => {
    fs.closeSync(fileFd)
    fs.closeSync(devNullFd)
  })
  assert.equal(mapsLines('zerocopy.node'), 0, 'the main thread has not loaded the addon')
  // Warm-up: whatever Node opens once per process for workers is not a leak.
  await startAndTerminate({ mode: 'attach' })
  const fdsBefore = openFds()

  await t.test('attached, no sends', async () => {
    const r = await startAndTerminate({ mode: 'attach' })
    assert.equal(r.outstandingIds, 0)
    assertNoNewFds(fdsBefore)
  })

  await t.test('zero-copy sends in flight to a paused reader', async () => {
    const r = await startAndTerminate({ mode: 'sending' })
    assert.ok((r.outstandingIds as number) > 0, 'sends were in flight when terminated')
    assertNoNewFds(fdsBefore)
  })

  await t.test('zero-copy sends from registered memory (io_uring fixed buffers) in flight', async () => {
    const r = await startAndTerminate({ mode: 'sending', registered: true })
    assert.ok((r.outstandingIds as number) > 0, 'sends were in flight when terminated')
    if (r.engine === 'io_uring') assert.ok((r.registeredSends as number) > 0, 'from registered memory')
    assertNoNewFds(fdsBefore)
  })

  await t.test('sendFileZeroCopy with file windows mapped (from a path)', async () => {
    const r = await startAndTerminate({ mode: 'file', file })
    assert.ok((r.mapped as number) > 0, 'a window was mapped when terminated')
    assert.equal(mapsLines(file), 0, 'no window of the file is still mapped')
    assertNoNewFds(fdsBefore)
  })

  await t.test('async syscalls and populate running on the thread pool', async () => {
    for (let i = 0; i < 5; i++) await startAndTerminate({ mode: 'async', file, fileFd, devNullFd })
    assert.equal(mapsLines(file), 0, 'no window of the file is still mapped')
    assertNoNewFds(fdsBefore)
  })

  await t.test('relays and an upload running on the relay thread', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await startAndTerminate({ mode: 'relay', upload: path.join(dir, `upload-${i}`) })
      assert.ok((r.flowing as number) > 0, 'bytes were flowing when terminated')
    }
    assertNoNewFds(fdsBefore)
  })

  await t.test('many workers at once, every mode', async () => {
    const modes = ['attach', 'sending', 'file', 'async', 'relay'] as const
    await Promise.all(
      Array.from({ length: 15 }, (_, i) =>
        startAndTerminate({ mode: modes[i % modes.length]!, file, fileFd, devNullFd, upload: path.join(dir, `many-${i}`) }),
      ),
    )
    assert.equal(mapsLines(file), 0, 'no window of the file is still mapped')
    assertNoNewFds(fdsBefore)
  })

  await t.test('a worker with sends in flight started and terminated 100 times', async () => {
    const started = Date.now()
    for (let i = 0; i < 100; i++) await startAndTerminate({ mode: i % 2 === 0 ? 'sending' : 'attach' })
    const elapsed = Date.now() - started
    // A bound that catches a teardown that hangs, not a measurement: the ASan build
    // (ZEROCOPY_NATIVE, scripts/test-asan.sh) starts each worker about twice as slowly.
    const bound = process.env.ZEROCOPY_NATIVE === undefined ? 20000 : 40000
    assert.ok(elapsed < bound, `100 workers took ${elapsed} ms`)
    assertNoNewFds(fdsBefore)
  })

  await t.test(
    'sendFileZeroCopy from an fd: its duplicate is closed too',
    async () => {
      const before = openFds()
      const r = await startAndTerminate({ mode: 'file', file, fileFd, sendFromFd: true })
      assert.ok((r.mapped as number) > 0, 'a window was mapped when terminated')
      assert.equal(mapsLines(file), 0, 'no window of the file is still mapped')
      assertNoNewFds(before)
    },
  )

  await t.test(
    // Also what fails if the binary gains a GNU_UNIQUE symbol (glibc then never unloads it).
    'every worker let go of the addon: Node unloaded it',
    async (t) => {
    // A terminated worker's environment is freed (and the addon unloaded) once its
    // thread-pool jobs and cleanup hooks are done: on a loaded machine that takes a while.
    let left = mapsLines('zerocopy.node')
    for (let waited = 0; left > 0 && waited < 5000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      left = mapsLines('zerocopy.node')
    }
    // Node up to 24 dlclose()s an addon when the last worker that loaded it ends (the
    // case that crashed); Node 26 keeps it loaded.
    if (left > 0 && Number(process.versions.node.split('.')[0]) >= 26) {
      return t.skip(`Node ${process.version} keeps an addon loaded after its last worker ended`)
    }
    assert.equal(left, 0)
  },
  )

  await t.test('the same with the addon loaded in the main thread too', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('../lib')
    assert.ok(mapsLines('zerocopy.node') > 0)
    const before = openFds()
    const modes = ['attach', 'sending', 'file', 'async', 'relay'] as const
    for (let round = 0; round < 3; round++) {
      await Promise.all(modes.map((mode) => startAndTerminate({ mode, file, fileFd, devNullFd, upload: path.join(dir, `main-${round}`) })))
    }
    assert.equal(mapsLines(file), 0, 'no window of the file is still mapped')
    assertNoNewFds(before)
  })
})
