// The connection a model sequence runs over: a sender (`client`, the stream the commands
// write to) and a peer (`server`, which reads and collects). Over plain loopback TCP the
// sender is a kernel socket (MSG_ZEROCOPY through its SendChannel); over TLS it is the
// server side of a TLS connection (the honest copy path through the TLS socket), and the
// peer a TLS client over a TCP socket of its own, whose kernel state tells a reset from
// a FIN; over HTTP/2 (h2c) it is a server stream after respond() (copies framed by the
// session), and the peer the client's request stream: END_STREAM is its clean end,
// RST_STREAM its reset, and a paused peer stalls the stream's flow-control window.
import * as http2 from 'node:http2'
import * as net from 'node:net'
import type { Duplex } from 'node:stream'
import * as tls from 'node:tls'
import { native } from '../../lib/native'
import { cert, key } from '../fixtures/tls-cert'
import { tcpPair } from '../helpers'

export type LinkKind = 'tcp' | 'tls' | 'h2'
export const LINK_KINDS: readonly LinkKind[] = ['tcp', 'tls', 'h2']

export interface Link {
  kind: LinkKind
  /** The sender: a net.Socket (tcp), the server-side tls.TLSSocket (tls), a ServerHttp2Stream (h2). */
  client: Duplex
  /** The peer that reads: a net.Socket (tcp), a tls.TLSSocket client (tls), a ClientHttp2Stream (h2). */
  server: Duplex
  /** Resets the peer's TCP connection (RST) and destroys the peer. */
  resetPeer(): void
  close(): Promise<void>
}

export async function tcpLink(): Promise<Link> {
  const pair = await tcpPair()
  return {
    kind: 'tcp',
    client: pair.client,
    server: pair.server,
    resetPeer: () => pair.server.resetAndDestroy(),
    close: () => pair.close(),
  }
}

/** A TLS connection on loopback; `client` is the server side's TLSSocket (the sender). */
export async function tlsLink(): Promise<Link> {
  const listener = tls.createServer({ key, cert })
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<tls.TLSSocket>((resolve) => listener.once('secureConnection', resolve))
  const raw = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1')
  raw.on('error', () => {})
  const peer = tls.connect({ socket: raw, ca: cert, servername: 'localhost' })
  // Until the client has the server's TLS 1.3 session ticket: a Node defect (20 to 26)
  // leaves every later write of a server socket pending for ever when its peer resets
  // the connection while that ticket's write is under way (TLS 1.2 and later resets are
  // fine). Real connections are past this point long before a body is sent.
  await new Promise<void>((resolve, reject) => {
    peer.once('session', () => resolve())
    peer.once('error', reject)
  })
  const sender = await accepted
  listener.close()
  // Newer Node lines move the raw socket's handle into the TLS socket: read the fd there.
  const fd = (peer as unknown as { _handle: { fd: number } })._handle.fd
  return {
    kind: 'tls',
    client: sender,
    server: peer,
    resetPeer: () => {
      native.disconnect(fd) // RST: a TLS socket has no resetAndDestroy of its own
      peer.destroy()
    },
    async close() {
      sender.destroy()
      peer.destroy()
      raw.destroy()
    },
  }
}

/** One HTTP/2 stream on a fresh h2c connection; `client` is the server's stream (the sender). */
export async function h2Link(): Promise<Link> {
  const listener = http2.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<http2.ServerHttp2Stream>((resolve) => listener.once('stream', resolve))
  const session = http2.connect(`http://127.0.0.1:${(listener.address() as net.AddressInfo).port}`)
  session.on('error', () => {})
  const peer = session.request({ ':path': '/', ':method': 'POST' })
  const sender = await accepted
  sender.respond({ ':status': 200 })
  await new Promise<void>((resolve) => peer.once('response', () => resolve()))
  listener.close() // stops listening; the session's socket stays until destroyed
  return {
    kind: 'h2',
    client: sender,
    server: peer,
    resetPeer: () => peer.close(http2.constants.NGHTTP2_CANCEL),
    async close() {
      sender.destroy()
      peer.destroy()
      session.destroy()
      await new Promise<void>((resolve) => listener.close(() => resolve()))
    },
  }
}

export function makeLink(kind: LinkKind): Promise<Link> {
  return kind === 'tls' ? tlsLink() : kind === 'h2' ? h2Link() : tcpLink()
}
