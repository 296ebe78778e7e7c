// A small TCP proxy on relay(): every connection accepted on the listen port is joined
// to a new connection to the target, and the environment's relay thread moves the
// bytes both ways (no JS per chunk) until both sides ended. A line on stderr shows the
// throughput once a second.
//   node dist/examples/tcp-proxy.js <listen port> <target host> <target port> [copy|splice|auto] [--max N]
// With --max N the proxy stops after N connections ended and prints a summary line.
import * as net from 'node:net'
import { relay, relayStats, type RelayMechanism } from '../lib'

const args = process.argv.slice(2)
const maxAt = args.indexOf('--max')
const max = maxAt >= 0 ? Number(args.splice(maxAt, 2)[1]) : Infinity
const [listenPort, targetHost, targetPort, mechanism = 'auto'] = args
if (!listenPort || !targetHost || !targetPort || !['copy', 'splice', 'auto'].includes(mechanism)) {
  console.error('usage: node dist/examples/tcp-proxy.js <listen port> <target host> <target port> [copy|splice|auto] [--max N]')
  process.exit(2)
}

let ended = 0
let failed = 0
let moved = 0
const mechanisms = new Set<string>()

function proxy(client: net.Socket): void {
  client.on('error', () => {}) // a reset ends the relay, which reports it
  const upstream = net.connect(Number(targetPort), targetHost)
  upstream.on('error', (err) => {
    if (upstream.connecting) {
      console.error(`\nupstream ${targetHost}:${targetPort}: ${err.message}`)
      client.destroy()
      done(false)
    }
  })
  // relay() waits for the connect itself; bytes the client sent meanwhile go first.
  relay(client, upstream, { mechanism: mechanism as RelayMechanism }).then(
    (r) => {
      moved += r.aToB + r.bToA
      mechanisms.add(r.mechanism)
      done(true)
    },
    (err: NodeJS.ErrnoException) => {
      if (!upstream.connecting) console.error(`\nrelay: ${err.code ?? ''} ${err.message}`)
      done(false)
    },
  )
}

function done(ok: boolean): void {
  if (ok) ended++
  else failed++
  if (ended + failed >= max) {
    server.close()
    clearInterval(ticker)
    line()
    process.stderr.write('\n')
    console.log(JSON.stringify({ connections: ended, failed, bytes: moved, mechanisms: [...mechanisms] }))
  }
}

let lastBytes = 0
let lastAt = performance.now()
function line(): void {
  const { running, bytes } = relayStats()
  const now = performance.now()
  const rate = (bytes - lastBytes) / ((now - lastAt) / 1000) / 1e6
  lastBytes = bytes
  lastAt = now
  process.stderr.write(`\r${running} active, ${ended} done, ${failed} failed, ${(bytes / 1e6).toFixed(0)} MB moved, ${rate.toFixed(0)} MB/s    `)
}
const ticker = setInterval(line, 1000)

const server = net.createServer({ allowHalfOpen: true }, proxy)
server.listen(Number(listenPort), () => {
  const port = (server.address() as net.AddressInfo).port
  console.error(`proxy on port ${port} -> ${targetHost}:${targetPort} (${mechanism})`)
})
