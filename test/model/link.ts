// The connection a model sequence runs over: a sender (`client`, the socket the commands
// write to) and a peer (`server`, which reads and collects). Over plain loopback TCP the
// sender is a kernel socket (MSG_ZEROCOPY through its SendChannel); over TLS it is the
// server side of a TLS connection (the honest copy path through the TLS socket), and the
// peer a TLS client over a TCP socket of its own, whose kernel state tells a reset from
// a FIN.
import * as net from 'node:net'
import * as tls from 'node:tls'
import { native } from '../../lib/native'
import { cert, key } from '../fixtures/tls-cert'
import { tcpPair } from '../helpers'

export type LinkKind = 'tcp' | 'tls'

export interface Link {
  kind: LinkKind
  /** The sender: a net.Socket (tcp) or the server-side tls.TLSSocket (tls). */
  client: net.Socket
  /** The peer that reads: a net.Socket (tcp) or a tls.TLSSocket client (tls). */
  server: net.Socket
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

export function makeLink(kind: LinkKind): Promise<Link> {
  return kind === 'tls' ? tlsLink() : tcpLink()
}
