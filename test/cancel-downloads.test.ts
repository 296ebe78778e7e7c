// Issue 21: a file server whose clients cancel downloads at random keeps a flat heap.
// Every response is sendFileZeroCopy(res, file); each client asks for one of a few files
// and goes at a random point (before the headers, mid-body, or never: some downloads
// finish), by closing with unread bytes or by a reset. After a forced GC the heap may not
// grow with the number of cancellations, the server sockets (every 4th is watched) must
// be collectable, and the socket registry must hold no more channels than before.
//
// Seeded: ZEROCOPY_CANCEL_SEED=N|random (printed), ZEROCOPY_CANCEL_RUNS (default 250;
// the long run is ZEROCOPY_CANCEL_RUNS=1000).
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import { sendFileZeroCopy } from '../lib/index'
import { registrySize } from '../lib/socket-registry'
import { heapAfterGc, Reachability } from './gc-util'
import { engine, tempDir } from './helpers'
import { exitWatchdog, MiB, within } from './regress-util'

exitWatchdog()

const RUNS = Number(process.env.ZEROCOPY_CANCEL_RUNS ?? 250)
const seedEnv = process.env.ZEROCOPY_CANCEL_SEED ?? '20261207'
const SEED = seedEnv === 'random' ? (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0 : Number(seedEnv)
const CONCURRENT = 8
const WARMUP = Math.min(50, Math.floor(RUNS / 5))
// What the heap may grow over the measured cancellations: V8's own churn (compiled code
// settles at a few hundred KiB here) and this test's WeakRefs. A leaked connection with
// its request and response is about 13 KB: a leak of even a tenth of them shows.
const HEAP_SLACK = 1 * MiB + 128 * RUNS

/** A small seeded PRNG (mulberry32): the same seed gives the same clients. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One client: asks for `name`, reads `cut` bytes of the response (headers included), then goes. */
function download(port: number, name: string, cut: number, reset: boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    const c = net.connect(port, '127.0.0.1')
    let got = 0
    const go = () => (reset ? c.resetAndDestroy() : c.destroy())
    c.on('error', () => {})
    c.once('close', () => resolve())
    c.once('connect', () => {
      c.write(`GET /${name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      if (cut === 0) go()
    })
    c.on('data', (chunk: Buffer) => {
      got += chunk.length
      if (got >= cut && !c.destroyed) go()
    })
  })
}

test(`a file server whose clients cancel at random keeps a flat heap (${RUNS} downloads, seeded)`, { timeout: 120000 }, async (t) => {
  console.log(`cancel-downloads seed ${SEED}, ${RUNS} runs, engine ${engine}`)
  const rand = prng(SEED)
  const dir = tempDir(t)
  const sizes = [0, 1, 4096, 65536 + 7, MiB, 3 * MiB + 123, 8 * MiB]
  sizes.forEach((size, i) => fs.writeFileSync(path.join(dir, `f${i}`), Buffer.alloc(size, 0x41 + i)))
  // Every 4th server socket is watched: a WeakRef per download would itself grow the heap.
  const sockets = new Reachability()
  let served = 0
  const settled: Array<Promise<unknown>> = []
  const server = http.createServer((req, res) => {
    if (served++ % 4 === 0) sockets.watch('server socket', req.socket)
    ;(res as { appState?: object }).appState = { url: req.url, payload: Buffer.alloc(1024) }
    settled.push(sendFileZeroCopy(res, path.join(dir, req.url!.slice(1))).catch(() => {}))
  })
  server.keepAliveTimeout = 100
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  const before = registrySize()

  const batch = async (count: number): Promise<void> => {
    for (let done = 0; done < count; ) {
      const n = Math.min(CONCURRENT, count - done)
      const clients = []
      for (let i = 0; i < n; i++) {
        const f = Math.floor(rand() * sizes.length)
        // A third before or right after the headers, a half mid-body, the rest to the end.
        const r = rand()
        const cut = r < 0.15 ? 0 : r < 0.3 ? 1 : r < 0.85 ? 1 + Math.floor(rand() * (sizes[f]! + 1)) : Infinity
        clients.push(download(port, `f${f}`, cut, rand() < 0.5))
      }
      await within(20000, Promise.all(clients), 'a batch of downloads to end')
      done += n
    }
    await within(20000, Promise.all(settled.splice(0)), 'the responses to settle')
  }

  await batch(WARMUP)
  const warm = await heapAfterGc()
  await batch(RUNS - WARMUP)
  // Node's keep-alive and header timers on a connection that just closed run out first.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const end = await heapAfterGc()
  const alive = await sockets.survivors()
  server.close()
  console.log(`heap after GC: ${(warm / MiB).toFixed(2)} MiB after ${WARMUP} downloads, ${(end / MiB).toFixed(2)} MiB after ${RUNS} (${(((end - warm) / (RUNS - WARMUP)) | 0)} B per download)`)
  assert.deepEqual(alive.length, 0, `${alive.length} of ${sockets.size} server sockets still reachable`)
  assert.equal(registrySize(), before, 'the registry holds no channel of a closed connection')
  assert.ok(end - warm < HEAP_SLACK, `the heap grew ${((end - warm) / 1024) | 0} KiB over ${RUNS - WARMUP} downloads`)
})
