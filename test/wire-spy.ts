// A TCP proxy on loopback that records every byte crossing it in both directions: put
// between a TLS (or HTTP/2) client and server, it shows what an eavesdropper on the
// wire would see, so a test can assert that no plaintext passed under the protocol layer.
import * as net from 'node:net'

export interface WireSpy {
  /** Where clients connect. */
  port: number
  /** Every byte seen so far, server to client and client to server. */
  toClient(): Buffer
  toServer(): Buffer
  close(): Promise<void>
}

export async function wireSpy(upstreamPort: number): Promise<WireSpy> {
  const down: Buffer[] = []
  const up: Buffer[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const server = net.connect(upstreamPort, '127.0.0.1')
    for (const s of [client, server]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {
        client.destroy()
        server.destroy()
      })
    }
    client.on('data', (d: Buffer) => {
      up.push(Buffer.from(d))
      server.write(d)
    })
    server.on('data', (d: Buffer) => {
      down.push(Buffer.from(d))
      client.write(d)
    })
    client.on('end', () => server.end())
    server.on('end', () => client.end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    toClient: () => Buffer.concat(down),
    toServer: () => Buffer.concat(up),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/**
 * Whether `haystack` contains a 16-byte window of `secret`, taken every `stride` bytes
 * (and at its start and end; 64 windows by default): any stretch of plaintext on the
 * wire longer than the stride shows.
 */
export function leaks(haystack: Buffer, secret: Buffer, stride = Math.max(1024, Math.ceil(secret.length / 64))): boolean {
  const probe = 16
  const starts = [0, Math.max(0, secret.length - probe)]
  for (let at = stride; at + probe <= secret.length; at += stride) starts.push(at)
  for (const at of starts) {
    if (haystack.includes(secret.subarray(at, at + probe))) return true
  }
  return false
}
