// Targets with a protocol layer for the entry-point fuzz: a TLS socket, HTTP(S) responses,
// an HTTP/2 compatibility response and a core HTTP/2 stream, a plain Writable; and the
// targets that look like one but are not (an ended or destroyed Writable, an unconstructed
// Writable, a plain object with write(), a Readable, an ended response, the HTTP/2
// session's socket). One is made per run, with a peer that records what it receives;
// after the fuzzed call, a good send on the same target, or (for a response) on the next
// request of the same connection, must arrive byte for byte.
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as https from 'node:https'
import type * as net from 'node:net'
import { Readable, Writable } from 'node:stream'
import * as tls from 'node:tls'
import { sendZeroCopy } from '../../lib'
import { cert, key } from '../fixtures/tls-cert'
import { randomBytes } from '../helpers'
import { ANY, TYPE, describe } from './args'
import { CALL_MS } from './world'

/** Targets, with the codes the target alone provokes (empty: a valid target). */
export const STREAM_TARGETS: Array<[string, string[]]> = [
  ['tls', []], ['http res', []], ['https res', []], ['h2 res', []], ['h2 stream', []], ['Writable', []],
  ['ended Writable', ['ERR_STREAM_WRITE_AFTER_END']], ['destroyed Writable', [ANY]], ['Object.create(Writable.prototype)', [TYPE]],
  ['{ write() {} }', [TYPE]], ['Readable', [TYPE]], ['ended http res', ['ERR_STREAM_WRITE_AFTER_END']],
  ['h2 res.socket', ['ERR_ZEROCOPY_PROTOCOL_LAYER']],
]
export const isResponseKind = (kind: string) => kind.endsWith(' res')

/** One target of a run and its peer. */
export interface StreamTarget {
  value: unknown
  /** After the fuzzed call: the peer got `want` (when given), then a good send arrives; what is wrong, if anything. */
  check(want: Buffer | undefined, failed: boolean): Promise<string | undefined>
  close(): Promise<void>
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until(cond: () => boolean, ms = CALL_MS): Promise<boolean> {
  for (const deadline = Date.now() + ms; !cond(); await wait(2)) if (Date.now() > deadline) return false
  return true
}

/** The servers, made once for the whole fuzz file; each run opens its own connection. */
export class StreamSite {
  private readonly pending: Array<(pair: [unknown, unknown]) => void> = []
  private constructor(
    readonly http: http.Server,
    readonly https: https.Server,
    readonly h2: http2.Http2Server,
    readonly tls: tls.Server,
  ) {
    const take = (req: unknown, res: unknown) => this.pending.shift()?.([req, res])
    http.on('request', take)
    https.on('request', take)
    h2.on('request', take)
  }

  static async open(): Promise<StreamSite> {
    const servers = [http.createServer(), https.createServer({ key, cert }), http2.createServer(), tls.createServer({ key, cert })] as const
    for (const s of servers) await new Promise<void>((r) => (s as net.Server).listen(0, '127.0.0.1', r))
    return new StreamSite(...servers)
  }

  private port(s: net.Server): number {
    return (s.address() as net.AddressInfo).port
  }

  /** The next request's (req, res) on any of the servers. */
  private nextRequest(): Promise<[unknown, unknown]> {
    return new Promise((resolve) => this.pending.push(resolve))
  }

  async target(kind: string): Promise<StreamTarget> {
    switch (kind) {
      case 'tls': return this.tlsTarget()
      case 'http res': case 'https res': case 'ended http res': return this.httpTarget(kind)
      case 'h2 res': case 'h2 stream': case 'h2 res.socket': return this.h2Target(kind)
      default: return writableTarget(kind)
    }
  }

  private async tlsTarget(): Promise<StreamTarget> {
    const accepted = new Promise<tls.TLSSocket>((r) => this.tls.once('secureConnection', r))
    const peer = tls.connect({ port: this.port(this.tls), host: '127.0.0.1', ca: cert, servername: 'localhost' })
    const got: Buffer[] = []
    peer.on('data', (d: Buffer) => got.push(d)).on('error', () => {})
    await new Promise<void>((r) => peer.once('session', () => r())) // past the TLS 1.3 tickets (see test/model/link.ts)
    const s = await accepted
    s.on('error', () => {})
    return {
      value: s,
      check: (want, failed) => goodStreamSend(s, got, want, failed),
      close: async () => {
        s.destroy()
        peer.destroy()
      },
    }
  }

  private async httpTarget(kind: string): Promise<StreamTarget> {
    const secure = kind === 'https res'
    const agent = new (secure ? https : http).Agent({ keepAlive: true, maxSockets: 1 })
    const port = this.port(secure ? this.https : this.http)
    const get = () => {
      const req = (secure ? https : http).get({ host: '127.0.0.1', port, path: '/', agent, ca: cert, servername: 'localhost' })
      return new Promise<{ body?: Buffer; error?: Error }>((resolve) => {
        req.on('response', (res) => {
          const chunks: Buffer[] = []
          res.on('data', (d: Buffer) => chunks.push(d))
          res.on('end', () => resolve({ body: Buffer.concat(chunks) }))
          res.on('error', (error) => resolve({ error }))
        })
        req.on('error', (error) => resolve({ error }))
      })
    }
    const next = this.nextRequest()
    const first = get()
    const [, res] = (await next) as [http.IncomingMessage, http.ServerResponse]
    if (kind === 'ended http res') res.end()
    return {
      value: res,
      check: async (want, failed) => {
        // The call's response: whole when it resolved (a response it did not end is ended now).
        if (!res.writableEnded && !res.destroyed) res.end()
        const r = await withTimeout(first)
        if (r === undefined) return 'the response to the fuzzed call never completed'
        if (want !== undefined && !failed && !r.body?.equals(want)) return `the client got ${describe(r.body ?? r.error)}, want ${want.length} B`
        if (r.error !== undefined && !failed) return `the response failed at the client (${describe(r.error)}) though the call did not`
        // A good send on the next request: the same connection when it is still up.
        const second = this.nextRequest()
        const reply = get()
        const [, res2] = (await second) as [unknown, http.ServerResponse]
        const data = randomBytes(5000, 5)
        const sent = await settled(sendZeroCopy(res2, data))
        if (sent !== undefined) return `then a good sendZeroCopy on the next response: ${sent}`
        const r2 = await withTimeout(reply)
        return r2?.body?.equals(data) ? undefined : `then the next response's body is ${describe(r2?.body ?? r2?.error)}, want ${data.length} B`
      },
      close: async () => agent.destroy(),
    }
  }

  private async h2Target(kind: string): Promise<StreamTarget> {
    const session = http2.connect(`http://127.0.0.1:${this.port(this.h2)}`)
    session.on('error', () => {})
    const get = () => {
      const req = session.request({ ':path': '/' })
      const chunks: Buffer[] = []
      req.on('data', (d: Buffer) => chunks.push(d))
      return new Promise<{ body?: Buffer; error?: Error }>((resolve) => {
        req.on('end', () => resolve({ body: Buffer.concat(chunks) }))
        req.on('error', (error) => resolve({ error }))
        req.on('close', () => resolve({ error: new Error(`stream closed (${req.rstCode})`) }))
        req.end()
      })
    }
    const next = this.nextRequest()
    const first = get()
    const [, res] = (await next) as [unknown, http2.Http2ServerResponse]
    if (kind === 'h2 stream') res.stream.respond({ ':status': 200 })
    const value = kind === 'h2 res' ? res : kind === 'h2 stream' ? res.stream : res.socket
    return {
      value,
      check: async (want, failed) => {
        if (kind === 'h2 stream') {
          if (!res.stream.destroyed && !res.stream.writableEnded) res.stream.end()
        } else if (!res.writableEnded && !res.stream.destroyed) res.end()
        const r = await withTimeout(first)
        if (r === undefined) return 'the HTTP/2 response to the fuzzed call never completed'
        if (want !== undefined && !failed && !r.body?.equals(want)) return `the client got ${describe(r.body ?? r.error)}, want ${want.length} B`
        const second = this.nextRequest()
        const reply = get()
        const [, res2] = (await second) as [unknown, http2.Http2ServerResponse]
        const data = randomBytes(5000, 6)
        const sent = await settled(sendZeroCopy(res2, data))
        if (sent !== undefined) return `then a good sendZeroCopy on the next HTTP/2 response: ${sent}`
        const r2 = await withTimeout(reply)
        return r2?.body?.equals(data) ? undefined : `then the next HTTP/2 response's body is ${describe(r2?.body ?? r2?.error)}, want ${data.length} B`
      },
      close: async () => {
        session.destroy()
      },
    }
  }

  private closed = false

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const s of [this.http, this.https, this.h2, this.tls] as net.Server[]) {
      ;(s as http.Server).closeAllConnections?.()
      await new Promise<void>((r) => s.close(() => r()))
    }
  }
}

/** A plain Writable that records, and the look-alikes. */
function writableTarget(kind: string): StreamTarget {
  const got: Buffer[] = []
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      got.push(Buffer.from(chunk))
      cb()
    },
  })
  w.on('error', () => {})
  let value: unknown = w
  if (kind === 'ended Writable') w.end()
  else if (kind === 'destroyed Writable') w.destroy()
  else if (kind === 'Object.create(Writable.prototype)') value = Object.create(Writable.prototype)
  else if (kind === '{ write() {} }') value = { write: () => true, end: () => {}, on: () => {} }
  else if (kind === 'Readable') value = new Readable({ read() {} })
  const usable = kind === 'Writable'
  return {
    value,
    check: (want, failed) => (usable ? goodStreamSend(w, got, want, failed) : Promise.resolve(undefined)),
    close: async () => {
      w.destroy()
    },
  }
}

/** After the call: the peer got `want` if it succeeded, then a good send arrives after it. */
async function goodStreamSend(s: Writable, got: Buffer[], want: Buffer | undefined, failed: boolean): Promise<string | undefined> {
  if (s.destroyed || s.writableEnded) return failed ? undefined : 'the target was closed though the call did not fail'
  const data = randomBytes(3000, 4)
  const sent = await settled(sendZeroCopy(s, data))
  if (sent !== undefined) return `then a good sendZeroCopy: ${sent}`
  const expected = Buffer.concat([...(want !== undefined && !failed ? [want] : []), data])
  const total = () => got.reduce((n, b) => n + b.length, 0)
  await until(() => total() >= expected.length)
  const all = Buffer.concat(got)
  if (want === undefined || failed) return all.subarray(all.length - data.length).equals(data) ? undefined : 'then the good send did not arrive intact'
  return all.equals(expected) ? undefined : `the peer got ${all.length} B, want ${expected.length} B (the call's bytes, then the good send's)`
}

async function settled(p: Promise<unknown>): Promise<string | undefined> {
  const r = await withTimeout(p.then(() => 'ok', (err: unknown) => `rejected: ${describe(err)}`))
  return r === 'ok' ? undefined : r ?? `did not settle within ${CALL_MS} ms`
}

function withTimeout<T>(p: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), CALL_MS)))]).finally(() => clearTimeout(timer))
}
