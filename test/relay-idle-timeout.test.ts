// Node's idle timeout and relays (issue 21, item 7): bytes the relay thread moves count
// as activity for `socket.setTimeout()` (Node's docs pattern: destroy on 'timeout'), on
// a source and on a destination, for relay() and receiveToFile(); a relay where nothing
// moves still times out.
import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import type * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import { receiveToFile, relay } from '../lib'
import { tempDir } from './helpers'
import { chain, closed, halfOpenPair, within } from './relay-util'
import { sleep } from './regress-util'

const TIMEOUT_MS = 300

/** Node's docs pattern: destroy the socket when it has been idle `ms`. */
function idleTimeout(s: net.Socket, ms = TIMEOUT_MS): { fired: boolean } {
  const state = { fired: false }
  s.setTimeout(ms, () => {
    state.fired = true
    s.destroy()
  })
  return state
}

/** Writes 100 bytes every 50 ms for `ms`; resolves with how many it wrote. */
async function trickle(s: net.Socket, ms: number): Promise<number> {
  let n = 0
  for (const end = Date.now() + ms; Date.now() < end; ) {
    s.write(Buffer.alloc(100, 0x61))
    n += 100
    await sleep(50)
  }
  return n
}

for (const side of ['source', 'destination'] as const) {
  test(`bytes every 50 ms keep a relay's ${side} from timing out`, { timeout: 15000 }, async () => {
    const c = await chain()
    const watched = idleTimeout(side === 'source' ? c.proxyIn : c.proxyOut)
    const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b' })
    let got = 0
    c.server.on('data', (chunk: Buffer) => (got += chunk.length))
    const sent = await trickle(c.client, 4 * TIMEOUT_MS)
    c.client.end()
    const result = await within(r, 3000, 'the relay')
    assert.equal(watched.fired, false, "'timeout' fired while bytes moved")
    assert.equal(result.aToB, sent)
    await sleep(20)
    assert.equal(got, sent)
    await c.close()
  })
}

test('a timeout set after the relay started is kept from firing too while bytes move', { timeout: 15000 }, async () => {
  const c = await chain()
  const r = relay(c.proxyIn, c.proxyOut, { direction: 'a->b' })
  await sleep(20)
  // As a proxy does once its upstream connected: the relay is running by now.
  const watched = idleTimeout(c.proxyOut)
  let got = 0
  c.server.on('data', (chunk: Buffer) => (got += chunk.length))
  const sent = await trickle(c.client, 4 * TIMEOUT_MS)
  c.client.end()
  const result = await within(r, 3000, 'the relay')
  assert.equal(watched.fired, false, "'timeout' fired while bytes moved")
  assert.equal(result.aToB, sent)
  await sleep(20)
  assert.equal(got, sent)
  await c.close()
})

test('bytes every 50 ms keep an upload from timing out', { timeout: 15000 }, async (t) => {
  const { client, server } = await halfOpenPair()
  const watched = idleTimeout(server)
  const file = path.join(tempDir(t), 'upload')
  const length = 100 * Math.floor((4 * TIMEOUT_MS) / 50)
  const upload = receiveToFile(server, file, { length })
  await trickle(client, 4 * TIMEOUT_MS + 100)
  const result = await within(upload, 3000, 'the upload')
  assert.equal(watched.fired, false, "'timeout' fired while bytes moved")
  assert.equal(result.bytes, length)
  assert.equal(fs.statSync(file).size, length)
  await Promise.all([closed(client), closed(server)])
})

test('a relay where nothing moves still times out', { timeout: 15000 }, async () => {
  const c = await chain()
  const watched = idleTimeout(c.proxyIn)
  const started = Date.now()
  const err = (await within(relay(c.proxyIn, c.proxyOut).catch((e: Error) => e), 3000, 'an idle relay')) as NodeJS.ErrnoException
  assert.equal(watched.fired, true)
  assert.equal(err.code, 'ERR_SOCKET_CLOSED')
  assert.ok(Date.now() - started >= TIMEOUT_MS - 20, 'not before the timeout')
  await c.close()
})

test('an upload where nothing moves still times out', { timeout: 15000 }, async (t) => {
  const { client, server } = await halfOpenPair()
  const watched = idleTimeout(server)
  const err = (await within(receiveToFile(server, path.join(tempDir(t), 'f')).catch((e: Error) => e), 3000, 'an idle upload')) as NodeJS.ErrnoException
  assert.equal(watched.fired, true)
  assert.equal(err.code, 'ERR_SOCKET_CLOSED')
  await Promise.all([closed(client), closed(server)])
})
