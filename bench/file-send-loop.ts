// One Node process sending a file once to a TCP reader, for bench/send-file.bench.ts.
//   node dist/bench/file-send-loop.js <port> <file> <mode>
// mode: zerocopy (sendFileZeroCopy) | stream (fs.createReadStream().pipe(socket)) |
//       stream-1m (the same with 1 MiB chunks).
// Prints {"bytes","calls","seconds","cpuSeconds","mechanism"} on stdout.
import * as fs from 'node:fs'
import * as net from 'node:net'
import { sendFileZeroCopy } from '../lib'

async function main(): Promise<void> {
  const [port, file, mode] = process.argv.slice(2)
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
  if (mode === 'zerocopy') {
    const r = await sendFileZeroCopy(socket, file!)
    calls = r.calls
    mechanism = r.mechanism
  } else {
    const highWaterMark = mode === 'stream-1m' ? 1024 * 1024 : undefined
    const stream = fs.createReadStream(file!, highWaterMark === undefined ? {} : { highWaterMark })
    stream.on('data', () => calls++)
    await new Promise<void>((resolve, reject) => {
      socket.once('finish', resolve) // every byte handed to the kernel
      socket.once('error', reject)
      stream.pipe(socket)
    })
  }
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  socket.destroy()
  console.log(JSON.stringify({ bytes: size, calls, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, mechanism }))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
