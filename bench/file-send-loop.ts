// One Node process sending a file to a TCP reader, for bench/send-file.bench.ts.
//   node dist/bench/file-send-loop.js <port> <file> <mode> [files]
// mode: zerocopy (sendFileZeroCopy) | stream (fs.createReadStream().pipe(socket)) |
//       stream-1m (the same with 1 MiB chunks).
// `files` (default 1): the file that many times, one after another on the connection,
// each send opening it anew (a server answering requests); the C twin does the same.
// Prints {"bytes","calls","seconds","cpuSeconds","mechanism"} on stdout.
import * as fs from 'node:fs'
import * as net from 'node:net'
import { sendFileZeroCopy } from '../lib'

async function main(): Promise<void> {
  const [port, file, mode, files] = process.argv.slice(2)
  const count = Number(files ?? 1)
  const socket = net.connect(Number(port), '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const size = fs.statSync(file!).size
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let calls = 0
  let mechanism: string = mode!
  for (let i = 0; i < count; i++) {
    if (mode === 'zerocopy') {
      const r = await sendFileZeroCopy(socket, file!)
      calls += r.calls
      mechanism = r.mechanism
      continue
    }
    const highWaterMark = mode === 'stream-1m' ? 1024 * 1024 : undefined
    const stream = fs.createReadStream(file!, highWaterMark === undefined ? {} : { highWaterMark })
    stream.on('data', () => calls++)
    const last = i === count - 1
    await new Promise<void>((resolve, reject) => {
      // Done: every byte handed to the kernel (the socket's finish after the last file;
      // before it, the end of the file's stream and an empty write queue).
      const done = (err?: Error) => {
        socket.off('error', done)
        if (err !== undefined) reject(err)
        else resolve()
      }
      if (last) socket.once('finish', () => done())
      else stream.once('end', () => (socket.writableLength === 0 ? done() : socket.once('drain', () => done())))
      socket.once('error', done)
      stream.pipe(socket, { end: last })
    })
  }
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  socket.destroy()
  console.log(JSON.stringify({ bytes: size * count, calls, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, mechanism }))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
