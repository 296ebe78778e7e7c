// HTTP/1.1 on a raw connection, for tests that need what a client library hides:
// pipelined requests in one write, and the responses split back out of the byte stream.
import assert from 'node:assert/strict'
import type * as net from 'node:net'
import { within } from './regress-util'

export interface Parsed {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/** Splits a byte stream into HTTP/1.1 responses (Content-Length or chunked bodies). */
export function parseResponses(data: Buffer, headRequests = new Set<number>()): Parsed[] {
  const out: Parsed[] = []
  let at = 0
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at)
    assert.ok(end >= 0, `a complete header block at byte ${at}`)
    const lines = data.subarray(at, end).toString('latin1').split('\r\n')
    const status = Number(lines[0].split(' ')[1])
    const headers: Record<string, string> = {}
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':')
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim()
    }
    at = end + 4
    let body: Buffer = Buffer.alloc(0)
    if (headRequests.has(out.length)) {
      // no body
    } else if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = []
      for (;;) {
        const lineEnd = data.indexOf('\r\n', at)
        const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16)
        at = lineEnd + 2
        if (size === 0) {
          at += 2
          break
        }
        parts.push(data.subarray(at, at + size))
        at += size + 2
      }
      body = Buffer.concat(parts)
    } else {
      const n = Number(headers['content-length'] ?? 0)
      body = data.subarray(at, at + n)
      assert.equal(body.length, n, 'a whole body')
      at += n
    }
    out.push({ status, headers, body })
  }
  return out
}

/** Writes `requests` in one write on a raw connection and reads until the server closes it. */
export async function pipelined(connect: () => net.Socket, requests: string[]): Promise<Buffer> {
  const socket = connect()
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  const closed = new Promise<void>((resolve, reject) => {
    socket.on('close', () => resolve())
    socket.on('error', reject)
  })
  const raw = requests.map((r, i) => `${r} HTTP/1.1\r\nHost: x\r\n${i === requests.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join('')
  socket.write(raw)
  await within(15000, closed, 'the pipelined responses')
  return Buffer.concat(chunks)
}

