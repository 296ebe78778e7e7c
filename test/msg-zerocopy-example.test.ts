// examples/msg_zerocopy: sender and receiver over loopback, parsed with the kernel
// selftest's output formats.
import * as assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { dgramCopies, randomBytes, tempDir } from './helpers'

const EXAMPLE = path.join(__dirname, '..', 'examples', 'msg_zerocopy.js')
const TX = /^tx=(\d+) \((\d+) MB\) txc=(\d+) zc=([yn])$/m
const RX = /^rx=(\d+) \((\d+) MB\)$/m

function run(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EXAMPLE, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code: code ?? -1, stderr }))
  })
}

let nextPort = 18000 + (process.pid % 1000) * 10

async function exchange(senderArgs: string[], proto: 'tcp' | 'udp') {
  const port = String(nextPort++)
  const receiver = run(['-4', '-r', '-p', port, '-t', '1', proto])
  await new Promise((r) => setTimeout(r, 300))
  const sender = await run(['-4', '-D', '127.0.0.1', '-p', port, '-t', '1', ...senderArgs, proto])
  const rx = await receiver
  const tx = TX.exec(sender.stderr)
  const rxm = RX.exec(rx.stderr)
  assert.ok(tx, `sender output: ${sender.stderr}`)
  assert.ok(rxm, `receiver output: ${rx.stderr}`)
  return { sender, receiver: rx, tx: tx.slice(1), rx: rxm.slice(1) }
}

test('tcp without and with -z: the receiver counts every byte; -z completes every send', async () => {
  const copy = await exchange([], 'tcp')
  assert.equal(copy.sender.code, 0)
  assert.equal(copy.tx[1], copy.rx[1], 'same MB on both sides')
  assert.equal(copy.tx[2], '0', 'copies take no completions')
  const zc = await exchange(['-z', '-v'], 'tcp')
  assert.equal(zc.sender.code, 0, zc.sender.stderr)
  assert.equal(zc.tx[1], zc.rx[1])
  assert.equal(zc.tx[2], zc.tx[0], 'txc equals tx: one completion per send')
  assert.equal(zc.tx[3], 'n', 'loopback copies, and the tool says so')
})

test('tcp -f sends a file with sendFileZeroCopy', async (t) => {
  const file = path.join(tempDir(t), 'f')
  fs.writeFileSync(file, randomBytes(8 * 1024 * 1024, 61))
  const r = await exchange(['-z', '-f', file], 'tcp')
  assert.equal(r.sender.code, 0, r.sender.stderr)
  assert.equal(r.tx[1], r.rx[1])
  assert.equal(r.tx[2], r.tx[0])
})

test('-Z 1 on loopback (which copies) prints the selftest serr line and exits 1', async () => {
  const r = await exchange(['-z', '-Z', '1'], 'tcp')
  assert.equal(r.sender.code, 1)
  assert.match(r.sender.stderr, /^serr: ee_code: 1 != expected 0$/m)
  assert.equal(r.sender.stderr.match(/serr:/g)?.length, 1, 'printed once')
})

test('udp without and with -z: the receiver counts every datagram the sender sent', async () => {
  for (const args of [[], ['-z']]) {
    // 1000 B datagrams: the receive buffer (net.core.rmem_max caps it) holds thousands,
    // enough to ride out the receiver losing its CPU for a moment on this 2-core
    // machine. UDP has no flow control: at 9000 B and more, loopback drops a few.
    const r = await exchange([...args, '-s', '1000'], 'udp')
    assert.equal(r.sender.code, 0, r.sender.stderr)
    assert.ok(Number(r.tx[0]) > 10000, `a real run: ${r.tx[0]} datagrams`)
    assert.equal(r.rx[0], r.tx[0], 'every datagram arrived')
    assert.equal(r.rx[1], r.tx[1], 'same MB on both sides')
    // Node 24+ dgram sockets send copies (libuv reads their error queue): no completions.
    if (args.length > 0) assert.equal(r.tx[2], dgramCopies() ? '0' : r.tx[0], 'one completion per send')
  }
})

test('bad arguments exit 2 with a usage line', async () => {
  const r = await run(['-x', 'tcp'])
  assert.equal(r.code, 2)
  assert.match(r.stderr, /unknown option -x/)
  const r2 = await run(['-4', '-D', '127.0.0.1', 'sctp'])
  assert.equal(r2.code, 2)
})
