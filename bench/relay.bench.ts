// Relays on loopback (4 GiB by default; ZEROCOPY_BENCH_RELAY_MB to change): a C source
// (bench/c/tcp_source.c) sends through a proxy process into the C sink (tcp_sink.c,
// discarding with MSG_TRUNC).
// The proxy is what is measured: relay() (copy and splice), Node's a.pipe(b) and
// stream.pipeline, and C one-way relays (read/write and splice through a pipe). Then
// uploads into a file (1 GiB; ZEROCOPY_BENCH_UPLOAD_MB): receiveToFile against
// socket.pipe(fs.createWriteStream()) and C loops. The proxy runs on CPU 0, source and
// sink on CPU 1; every variant gets the same bytes in its own process.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { cBinary, onCpu, parseResult, start, toRow, type BenchContext, type Measured, type Row } from './harness'

const MiB = 1024 * 1024
const RELAY_MB = Number(process.env.ZEROCOPY_BENCH_RELAY_MB ?? 4096)
const UPLOAD_MB = Number(process.env.ZEROCOPY_BENCH_UPLOAD_MB ?? 1024)
/**
 * The sink discards with recv(MSG_TRUNC) (default; `ZEROCOPY_BENCH_RELAY_SINK=read` for
 * read()): it shares CPU 1 with the source, and a sink that copies nothing leaves that
 * core to the source, so that the proxy is what limits the run. (A source sending a
 * memfd with sendfile was tried too: every proxy got slower reading skbs of page frags.)
 */
const SINK_MODE = process.env.ZEROCOPY_BENCH_RELAY_SINK === 'read' ? [] : ['trunc']

/** Starts a proxy (pinned to CPU 0), sends `mb` MiB through it, returns its result. */
async function through(proxy: string[], mb: number): Promise<Measured> {
  const [cmd, ...args] = [...onCpu(0), ...proxy]
  const p = start(cmd!, args, ['ignore', 'pipe', 'inherit'])
  const port = await new Promise<string>((resolve) => p.child.stdout!.once('data', (d: Buffer) => resolve(d.toString().split('\n')[0]!.trim())))
  const [scmd, ...sargs] = [...onCpu(1), cBinary('tcp_source'), port, String(mb * MiB)]
  await start(scmd!, sargs, ['ignore', 'ignore', 'inherit']).done
  const { stdout } = await p.done
  const m = parseResult(stdout)
  if (m.bytes !== mb * MiB) throw new Error(`${proxy.join(' ')} moved ${m.bytes} bytes, not ${mb * MiB}`)
  return m
}

export async function run(ctx: BenchContext): Promise<Row[]> {
  const [pin, ...pinArgs] = [...onCpu(1), cBinary('tcp_sink')]
  const sink = start(pin!, [...pinArgs, '0', ...SINK_MODE], ['ignore', 'pipe', 'inherit'])
  sink.done.catch(() => {}) // killed on purpose
  const file = path.join(os.tmpdir(), `zerocopy-bench-upload-${process.pid}`)
  try {
    const port = await new Promise<string>((resolve) => sink.child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())))
    const node = (mode: string, buffer = MiB) => [process.execPath, path.join(__dirname, 'relay-proxy.js'), port, mode, String(buffer)]
    const c = (mode: string) => [cBinary('relay'), port, mode, String(MiB)]
    const toFile = (argv: string[], target: string) => {
      argv[argv.length - 3] = target
      return argv
    }
    // Uploads: each run's file is removed after it, so dirty pages never pile up.
    const upload = async (argv: string[]) => {
      try {
        return await through(toFile(argv, file), UPLOAD_MB)
      } finally {
        fs.rmSync(file, { force: true })
      }
    }
    const relayBench = `relay, loopback, one way`
    const relayGroup = `${RELAY_MB} MiB`
    const uploadBench = 'socket -> file'
    const uploadGroup = `${UPLOAD_MB} MiB`
    const cRelays = ['C read/write relay', 'C splice relay']
    const cUploads = ['C read/write to file', 'C splice to file']
    const steps: Array<() => Promise<Row>> = [
      async () => toRow(relayBench, relayGroup, 'relay() copy, 1 MiB', 'zerocopy', await through(node('relay-copy'), RELAY_MB), cRelays),
      async () => toRow(relayBench, relayGroup, 'relay() copy, 256 KiB', 'zerocopy', await through(node('relay-copy', 256 << 10), RELAY_MB), cRelays),
      async () => toRow(relayBench, relayGroup, 'relay() splice, 1 MiB', 'zerocopy', await through(node('relay-splice'), RELAY_MB), cRelays),
      async () => toRow(relayBench, relayGroup, 'a.pipe(b)', 'stock-node', await through(node('pipe'), RELAY_MB), cRelays),
      async () => toRow(relayBench, relayGroup, 'stream.pipeline(a, b)', 'stock-node-variant', await through(node('pipeline'), RELAY_MB), cRelays),
      async () => toRow(relayBench, relayGroup, 'C read/write relay', 'c', await through(c('rw'), RELAY_MB)),
      async () => toRow(relayBench, relayGroup, 'C splice relay', 'c', await through(c('splice'), RELAY_MB)),
      async () => toRow(uploadBench, uploadGroup, 'receiveToFile copy', 'zerocopy', await upload(node('receive-copy')), cUploads),
      async () => toRow(uploadBench, uploadGroup, 'receiveToFile splice', 'zerocopy', await upload(node('receive-splice')), cUploads),
      async () => toRow(uploadBench, uploadGroup, 'socket.pipe(createWriteStream())', 'stock-node', await upload(node('write-stream')), cUploads),
      async () => toRow(uploadBench, uploadGroup, 'C read/write to file', 'c', await upload(c('file-rw'))),
      async () => toRow(uploadBench, uploadGroup, 'C splice to file', 'c', await upload(c('file-splice'))),
    ]
    // As harness.inRotation, for steps that are Promises: one after another, rotated.
    const out = new Array<Row>(steps.length)
    for (let k = 0; k < steps.length; k++) {
      const i = (ctx.round + k) % steps.length
      out[i] = await steps[i]!()
    }
    return out
  } finally {
    sink.child.kill()
    fs.rmSync(file, { force: true })
  }
}

