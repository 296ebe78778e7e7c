// The namespace test bed: two hosts joined by a veth (MTU 65535), host B forwarding a
// sink prefix into a blackhole (examples/netns-topology.ts), and examples/msg_zerocopy
// run across them: tcp to a receiver on B with and without -z and with -f, and udp into
// the sink with and without -z. Prints one table. Needs root; without it, says so and
// exits 0. The namespaces are removed afterwards, also on failure or Ctrl-C.
//   node dist/examples/netns-testbed.js [seconds per run]
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createSink, netnsUnavailable, RECEIVER_ADDRESS, SINK_ADDRESS, type SinkTopology } from './netns-topology'

const EXAMPLE = path.join(__dirname, 'msg_zerocopy.js')
const TX = /^tx=(\d+) \((\d+) MB\) txc=(\d+) zc=([yn])$/m

interface Run {
  test: 'tcp' | 'udp'
  mode: string
  args: string[]
  why: string
}

function inNs(ns: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, EXAMPLE, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code: code ?? -1, stderr }))
  })
}

async function runOne(topo: SinkTopology, run: Run, seconds: number, port: number) {
  const t = String(seconds)
  let receiver: Promise<{ code: number; stderr: string }> | undefined
  if (run.test === 'tcp') {
    receiver = inNs(topo.receiver, ['-4', '-r', '-D', RECEIVER_ADDRESS, '-p', String(port), '-t', t, 'tcp'])
    await new Promise((r) => setTimeout(r, 400))
  }
  const dst = run.test === 'tcp' ? RECEIVER_ADDRESS : SINK_ADDRESS
  const sender = await inNs(topo.sender, ['-4', '-D', dst, '-p', String(port), '-t', t, '-v', ...run.args, run.test])
  if (receiver) await receiver
  const m = TX.exec(sender.stderr)
  if (sender.code !== 0 || !m) throw new Error(`${run.test} ${run.mode} failed: ${sender.stderr.trim()}`)
  const note = /^note: (.*)$/m.exec(sender.stderr)?.[1]
  // -t s runs s + 0.2 seconds, as in the selftest.
  return { mbps: Number(m[2]) / (seconds + 0.2), txc: Number(m[3]), zc: m[4]!, note }
}

async function main(): Promise<number> {
  const why = netnsUnavailable()
  if (why !== undefined) {
    console.log(`netns-testbed: ${why}; nothing to do`)
    return 0
  }
  const seconds = Number(process.argv[2] ?? 2)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerocopy-testbed-'))
  const file = path.join(dir, 'payload.bin')
  fs.writeFileSync(file, Buffer.alloc(64 * 1024 * 1024, 0x66))
  const runs: Run[] = [
    { test: 'tcp', mode: 'copy', args: [], why: 'plain sends' },
    // -Z says what each run expects; a completion that disagrees fails the run.
    { test: 'tcp', mode: '-z', args: ['-z', '-Z', '0'], why: 'TCP needs a receiving socket, and local delivery copies' },
    { test: 'tcp', mode: '-f file', args: ['-z', '-Z', '0', '-f', file], why: 'as -z: the receiver on B is local delivery' },
    { test: 'udp', mode: 'copy', args: [], why: 'plain sends' },
    { test: 'udp', mode: '-z', args: ['-z', '-Z', '1'], why: 'forwarded to a blackhole: freed without a copy, as by a NIC' },
  ]
  const topo = createSink()
  const cleanup = () => topo.remove()
  process.once('SIGINT', () => {
    cleanup()
    process.exit(130)
  })
  process.once('SIGTERM', () => {
    cleanup()
    process.exit(143)
  })
  const rows: string[][] = [['test', 'mode', 'MB/s', 'completions', 'zc', 'why']]
  try {
    let port = 8000
    for (const [i, run] of runs.entries()) {
      // A way for the tests to make a step fail and see the clean-up happen anyway.
      if (process.env.ZEROCOPY_TESTBED_FAIL_AT === String(i)) throw new Error(`step ${i} failed on request`)
      const r = await runOne(topo, run, seconds, port++)
      rows.push([run.test, run.mode, r.mbps.toFixed(0), String(r.txc), r.zc, r.note ?? run.why])
    }
  } finally {
    cleanup()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd())
  return 0
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`netns-testbed: ${err.message}`)
    process.exit(1)
  },
)
