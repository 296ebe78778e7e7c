// One Node proxy process of the relay benchmarks, the twin of bench/c/relay.c: listens
// on an ephemeral loopback port (printed), accepts one connection and moves what it
// sends until EOF, then prints the one-line result (wall time from accept to the end,
// this process's CPU time, every thread included).
//   node relay-proxy.js <sink port> relay-copy|relay-splice|pipe|pipeline <buffer bytes>
//   node relay-proxy.js <file> receive-copy|receive-splice|write-stream <buffer bytes>
import * as fs from 'node:fs'
import * as net from 'node:net'
import { pipeline } from 'node:stream'
import { receiveToFile, relay } from '../lib'

const [target, mode, size] = process.argv.slice(2) as [string, string, string]
const bufferSize = Number(size)

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s))
    s.once('error', reject)
  })
}

/** Moves everything from `a` to the target; resolves with the byte count once done. */
async function move(a: net.Socket): Promise<number> {
  if (mode.startsWith('receive-')) {
    const r = await receiveToFile(a, target, { mechanism: mode === 'receive-splice' ? 'splice' : 'copy', bufferSize })
    a.destroy()
    return r.bytes
  }
  if (mode === 'write-stream') {
    const file = fs.createWriteStream(target)
    await new Promise<void>((resolve, reject) => pipeline(a, file, (err) => (err ? reject(err) : resolve())))
    return a.bytesRead
  }
  const b = await connect(Number(target))
  if (mode.startsWith('relay-')) {
    const r = await relay(a, b, { mechanism: mode === 'relay-splice' ? 'splice' : 'copy', bufferSize })
    return r.aToB
  }
  const closed = new Promise((resolve) => b.once('close', resolve))
  if (mode === 'pipe') a.pipe(b)
  else pipeline(a, b, () => {})
  b.resume() // the sink sends nothing; its end closes b
  await closed
  return a.bytesRead
}

const server = net.createServer({ allowHalfOpen: true }, (a) => {
  server.close()
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  move(a).then(
    (bytes) => {
      const cpu = process.cpuUsage(cpu0)
      const result = { bytes, calls: 0, seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 }
      process.stdout.write(`${JSON.stringify(result)}\n`)
    },
    (err: Error) => {
      console.error(err)
      process.exit(1)
    },
  )
})
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`))
