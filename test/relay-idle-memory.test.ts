// Idle relays give their memory back (issue 21, item 8): two-way relays that each moved
// 1 MiB both ways and then wait hold no buffer or pipe (relayStats().held drops to 0)
// and the process's resident memory per idle relay does not depend on what it moved;
// splice relays' pipes (kernel memory, not resident in the process) are closed.
// The clients and the upstream server live in a child process, so that the only memory
// the transfer can leave in this one is the relays' own.
import * as assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import * as net from 'node:net'
import * as readline from 'node:readline'
import { test } from 'node:test'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { relay, relayStats } from '../lib'
import { openFdTargets } from './helpers'
import { within } from './relay-util'
import { sleep, waitFor } from './regress-util'

const RELAYS = Number(process.env.ZEROCOPY_IDLE_RELAYS ?? 200) // 500 for the measurement in the README
const KiB = 1024

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

// Under ASan (scripts/test-asan.sh preloads its runtime) every malloc of the process
// goes through ASan's allocator, whose quarantine keeps freed memory resident: the
// resident-memory bound means nothing there; the held bytes and the pipes still count.
const underAsan = (process.env.LD_PRELOAD ?? '').includes('asan')

const openPipes = () => [...openFdTargets().values()].filter((to) => to.startsWith('pipe:')).length

// The child: RELAYS clients to the proxy (`front`) and an upstream server; on "go" every
// client and every upstream connection writes 1 MiB; "moved" once each side read its
// 1 MiB; on "end" every socket ends and the child exits once all closed.
const CHILD = `
const net = require('net')
const readline = require('readline')
const [front, n] = process.argv.slice(1).map(Number)
const MiB = 1 << 20
const clients = [], ups = []
let done = 0
const count = (s) => { let got = 0; s.on('data', (c) => { got += c.length; if (got === MiB && ++done === 2 * n) console.log('moved') }) }
const upstream = net.createServer((s) => { ups.push(s); count(s); s.on('end', () => s.end()) })
upstream.listen(0, '127.0.0.1', () => console.log('port ' + upstream.address().port))
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'connect') for (let i = 0; i < n; i++) { const c = net.connect(front, '127.0.0.1'); clients.push(c); count(c) }
  if (line === 'go') for (const s of [...clients, ...ups]) s.write(Buffer.alloc(MiB, 0x42))
  if (line === 'end') { let open = 2 * n; for (const s of [...clients, ...ups]) { s.on('close', () => { if (--open === 0) { console.log('bye'); process.exit(0) } }); s.end() }; upstream.close() }
})
`

for (const mechanism of ['copy', 'splice'] as const) {
  test(`${mechanism}: ${RELAYS} idle two-way relays that moved 1 MiB each way hold no buffers`, { timeout: 60000 }, async () => {
    const front = net.createServer()
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
    const child = spawn(process.execPath, ['-e', CHILD, String((front.address() as net.AddressInfo).port), String(RELAYS)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    try {
      const lines: string[] = []
      readline.createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l))
      await waitFor('the child upstream', () => lines.some((l) => l.startsWith('port ')), 10000)
      const upPort = Number(lines.find((l) => l.startsWith('port '))!.slice(5))
      const relays: Array<Promise<unknown>> = []
      front.on('connection', (a) => {
        const b = net.connect(upPort, '127.0.0.1')
        b.once('connect', () => relays.push(relay(a, b, { mechanism })))
      })
      const pipesBefore = openPipes() // the child's stdio
      child.stdin!.write('connect\n')
      await waitFor('every relay running', () => relays.length === RELAYS && relayStats().running === RELAYS, 20000)
      await sleep(200)
      gc()
      const rssIdle = process.memoryUsage().rss

      child.stdin!.write('go\n')
      await waitFor('1 MiB each way through every relay', () => lines.includes('moved'), 30000)
      await waitFor('the idle relays to give their buffers back', () => relayStats().held === 0, 5000)
      gc()
      const rssAfter = process.memoryUsage().rss
      const perRelay = (rssAfter - rssIdle) / RELAYS
      console.log(`# ${mechanism}: resident memory per idle relay after 1 MiB each way: ${(perRelay / KiB).toFixed(1)} KiB`)
      if (!underAsan) assert.ok(perRelay < 48 * KiB, `${(perRelay / KiB).toFixed(1)} KiB resident per idle relay`)
      assert.equal(openPipes(), pipesBefore, 'pipes open in idle relays')

      child.stdin!.write('end\n')
      const results = await within(Promise.allSettled(relays), 20000, 'the relays to end')
      for (const r of results) assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String(r.reason) : '')
      assert.equal(relayStats().held, 0)
    } finally {
      front.close()
      if (child.exitCode === null) child.kill()
    }
  })
}
