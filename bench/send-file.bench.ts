// A cached file (1 GiB by default; ZEROCOPY_BENCH_FILE_MB to change) to a loopback TCP
// reader (bench/c/tcp_sink.c): sendFileZeroCopy against fs.createReadStream().pipe()
// (default and 1 MiB chunks) and against C loops over the same file: sendfile (fast,
// but gives no release notice), read-only mapping + send, and read-only mapping +
// MSG_ZEROCOPY with completions. Then small files (4 KiB, 256 KiB) sent one after
// another on one connection, each opened anew, as a server does per request. Every
// sender is its own process.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { cBinary, formatBytes, inRotation, onCpu, parseResult, start, toRow, type BenchContext, type Measured, type Row } from './harness'

const FILE_MB = Number(process.env.ZEROCOPY_BENCH_FILE_MB ?? 1024)

/** The small-file rows: a file of `size` bytes sent `files` times, one after another. */
const SMALL_FILES = [
  { size: 4096, files: 3000 },
  { size: 256 * 1024, files: 500 },
]

/** A file of `size` bytes in the temp directory. */
function smallFile(size: number): string {
  const file = path.join(os.tmpdir(), `zerocopy-bench-${size}.bin`)
  if (!fs.existsSync(file) || fs.statSync(file).size !== size) fs.writeFileSync(file, Buffer.alloc(size, 0x66))
  return file
}

/** Reads the file so that all of it is in the page cache. */
function warm(file: string): void {
  const fd = fs.openSync(file, 'r')
  const block = Buffer.alloc(4 * 1024 * 1024)
  while (fs.readSync(fd, block) > 0);
  fs.closeSync(fd)
}

/** A file of FILE_MB MiB in the temp directory. */
function cachedFile(): string {
  const file = path.join(os.tmpdir(), `zerocopy-bench-${FILE_MB}m.bin`)
  if (!fs.existsSync(file) || fs.statSync(file).size !== FILE_MB * 1024 * 1024) {
    const fd = fs.openSync(file, 'w')
    const block = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < FILE_MB; i++) {
      block.fill(i & 0xff)
      fs.writeSync(fd, block)
    }
    fs.closeSync(fd)
  }
  return file
}

export async function run(ctx: BenchContext): Promise<Row[]> {
  const file = cachedFile()
  const [pin, ...pinArgs] = [...onCpu(1), cBinary('tcp_sink')]
  const sink = start(pin!, [...pinArgs, '0'], ['ignore', 'pipe', 'inherit'])
  sink.done.catch(() => {}) // killed on purpose
  try {
    const port = await new Promise<string>((resolve) => sink.child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())))
    // Re-read before every run: this machine's page cache is reclaimed eagerly, and a
    // partly evicted file would measure the disk instead of the send path.
    const node = (mode: string, engine?: 'epoll' | 'io_uring', f = file, files = 1): Measured => {
      warm(f)
      const [cmd, ...args] = [...onCpu(0), process.execPath, path.join(__dirname, 'file-send-loop.js'), port, f, mode, String(files)]
      return parseResult(execFileSync(cmd!, args, { env: { ...process.env, ZEROCOPY_ENGINE: engine ?? '' } }).toString())
    }
    const c = (mode: string, f = file, files = 1): Measured => {
      warm(f)
      const [cmd, ...args] = [...onCpu(0), cBinary('file_sender'), port, f, mode, String(256 * 1024), String(files)]
      return parseResult(execFileSync(cmd!, args).toString())
    }
    const bench = 'file -> loopback TCP'
    const group = `${formatBytes(FILE_MB * 1024 * 1024)} cached`
    const row = (variant: string, role: Row['role'], m: Measured, cTwin?: string | string[], g = group): Row =>
      toRow(bench, g, variant, role, m, cTwin)
    const big = inRotation(ctx.round, [
      // Compared with the faster of the honest C loops (sendfile cannot say when it is done).
      () => row('sendFileZeroCopy (epoll engine)', 'zerocopy', node('zerocopy', 'epoll'), ['C mmap + MSG_ZEROCOPY', 'C mmap + send']),
      () => row('sendFileZeroCopy (io_uring engine)', 'zerocopy', node('zerocopy', 'io_uring'), ['C mmap + MSG_ZEROCOPY', 'C mmap + send']),
      () => row('createReadStream().pipe()', 'stock-node', node('stream'), 'C mmap + send'),
      () => row('createReadStream({1 MiB}).pipe()', 'stock-node-variant', node('stream-1m'), 'C mmap + send'),
      () => row('C sendfile (no release notice)', 'c', c('sendfile')),
      () => row('C mmap + send', 'c', c('mmap-send')),
      () => row('C mmap + MSG_ZEROCOPY', 'c', c('mmap-zerocopy')),
    ])
    // A server's many small files: each opened, sent, released and closed in turn on one
    // connection. Here the per-file costs (open, stat, map, the release's wake-up) rule.
    for (const { size, files } of SMALL_FILES) {
      const f = smallFile(size)
      const g = `${formatBytes(size)} cached, ${files} files one after another`
      big.push(
        ...inRotation(ctx.round, [
          () => row('sendFileZeroCopy (epoll engine)', 'zerocopy', node('zerocopy', 'epoll', f, files), 'C mmap + MSG_ZEROCOPY', g),
          () => row('sendFileZeroCopy (io_uring engine)', 'zerocopy', node('zerocopy', 'io_uring', f, files), 'C mmap + MSG_ZEROCOPY', g),
          () => row('createReadStream().pipe()', 'stock-node', node('stream', undefined, f, files), 'C mmap + MSG_ZEROCOPY', g),
          () => row('C sendfile (no release notice)', 'c', c('sendfile', f, files), undefined, g),
          () => row('C mmap + MSG_ZEROCOPY', 'c', c('mmap-zerocopy', f, files), undefined, g),
        ]),
      )
    }
    return big
  } finally {
    sink.child.kill()
  }
}
