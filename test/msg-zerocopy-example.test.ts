// examples/msg_zerocopy on loopback, held to the kernel selftest's behaviour: each side
// checked against what the other side of the selftest expects (the payload pattern,
// 65435 B, every byte counted), the receiver's checks (a wrong size or content fails
// it), its exit codes, and the selftest's command line (getopt's rules).
import * as assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import { payloadPattern } from '../examples/msg_zerocopy'
import { MAX_PAYLOAD } from '../examples/msg_zerocopy-config'
import { randomBytes, tempDir } from './helpers'

const EXAMPLE = path.join(__dirname, '..', 'examples', 'msg_zerocopy.js')
const TX = /^tx=(\d+) \((\d+) MB\) txc=(\d+) zc=([yn])$/m
const RX = /^rx=(\d+) \((\d+) MB\)$/m
const STATS = /^stats: (.*)$/m

interface Run {
  code: number
  stderr: string
}
function run(args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [EXAMPLE, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const done = new Promise<Run>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolve({ code: code ?? -1, stderr }))
  })
  // A run never outlives its test: 20 s is far past any -t used here.
  const timer = setTimeout(() => child.kill('SIGKILL'), 20000)
  void done.finally(() => clearTimeout(timer))
  return done
}

/** Resolves once a receiver holds `port` on loopback (or 10 s passed, or `exited` settled). */
async function bound(proto: string, port: string, exited: Promise<unknown>): Promise<void> {
  let over = false
  void exited.finally(() => (over = true))
  const deadline = Date.now() + 10000
  while (!over && Date.now() < deadline) {
    const ss = spawnSync('ss', ['-Han', proto === 'tcp' ? '-lt' : '-u', `sport = :${port}`])
    if (ss.stdout?.toString().trim()) return
    await new Promise((r) => setTimeout(r, 10))
  }
}

let nextPort = 19000 + (process.pid % 500) * 20
const port = () => String(nextPort++)

/**
 * A receiver, then (once it is bound) a sender, both the example; the sender's -t 0
 * runs 200 ms. A udp receiver's time runs from its bind and ends 0.4 s after its -t, so
 * it gets -t 1: a slow-starting sender (ASan) must not find it gone (ECONNREFUSED). A
 * tcp receiver's time runs from the accept.
 */
async function pair(proto: 'tcp' | 'udp', senderArgs: string[] = [], receiverArgs: string[] = []) {
  const p = port()
  const receiver = run(['-4', '-r', '-D', '127.0.0.1', '-p', p, '-t', proto === 'udp' ? '1' : '0', ...receiverArgs, proto])
  await bound(proto, p, receiver)
  const sender = await run(['-4', '-D', '127.0.0.1', '-p', p, '-t', '0', '-v', ...senderArgs, proto])
  const rx = await receiver
  const tx = TX.exec(sender.stderr)
  const rxm = RX.exec(rx.stderr)
  assert.ok(tx, `sender output: ${sender.stderr}`)
  assert.ok(rxm, `receiver output: ${rx.stderr}`)
  const stats = JSON.parse(STATS.exec(sender.stderr)![1]!) as { zeroCopyBytes: number; copyBytes: number }
  return { sender, receiver: rx, tx: tx.slice(1), rx: rxm.slice(1), sentBytes: stats.zeroCopyBytes + stats.copyBytes }
}

test('tcp: the example pair, without and with -z (options after the test name, grouped flags)', async () => {
  const copy = await pair('tcp')
  assert.equal(copy.sender.code, 0, copy.sender.stderr)
  assert.equal(copy.receiver.code, 0, copy.receiver.stderr)
  assert.equal(copy.tx[1], copy.rx[1], 'same MB on both sides')
  assert.equal(copy.tx[2], '0', 'copies take no completions')
  assert.equal(copy.tx[3], 'n')
  const zc = await pair('tcp', ['-z', '-Z', '0'])
  assert.equal(zc.sender.code, 0, zc.sender.stderr)
  assert.equal(zc.tx[1], zc.rx[1])
  assert.equal(zc.tx[2], zc.tx[0], 'txc equals tx: one completion per send')
  assert.equal(zc.tx[3], 'n', 'loopback copies: -Z 0 expected that, and zc=n')
  assert.doesNotMatch(zc.sender.stderr, /serr:/)
})

test('-Z 1 on loopback (which copies): the selftest serr line, once, zc=n and exit 1', async () => {
  const r = await pair('tcp', ['-zZ1']) // grouped: -z, and -Z with its value attached
  assert.equal(r.sender.code, 1)
  assert.match(r.sender.stderr, /^serr: ee_code: 0 != expected 1$/m)
  assert.equal(r.sender.stderr.match(/serr:/g)?.length, 1, 'printed once')
  assert.equal(r.tx[3], 'n')
})

test('udp: the example pair with the default payload (65435 B), without and with -z', async () => {
  for (const args of [[], ['-z']]) {
    const r = await pair('udp', args)
    assert.equal(r.sender.code, 0, r.sender.stderr)
    assert.equal(r.receiver.code, 0, `every datagram passed the size and content checks: ${r.receiver.stderr}`)
    assert.ok(Number(r.tx[0]) > 100, `a real run: ${r.tx[0]} datagrams`)
    assert.equal(r.sentBytes, Number(r.tx[0]) * MAX_PAYLOAD, 'every datagram 65435 B')
    // UDP has no flow control: the receiver may drop, never invent.
    assert.ok(Number(r.rx[0]) > 0 && Number(r.rx[0]) <= Number(r.tx[0]), `rx ${r.rx[0]} <= tx ${r.tx[0]}`)
  }
})

/** The other side of the selftest's sender: a receiver that keeps every byte. */
async function keepAll(proto: 'tcp' | 'udp', p: string): Promise<{ done: Promise<Buffer[]>; close: () => void }> {
  if (proto === 'tcp') {
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(Number(p), '127.0.0.1', r))
    const done = new Promise<Buffer[]>((resolve) =>
      server.once('connection', (c) => {
        const chunks: Buffer[] = []
        c.on('data', (d: Buffer) => chunks.push(d))
        c.once('end', () => resolve(chunks))
      }),
    )
    return { done, close: () => server.close() }
  }
  const s = dgram.createSocket('udp4')
  await new Promise<void>((r) => s.bind(Number(p), '127.0.0.1', r))
  s.setRecvBufferSize(8 << 20)
  const got: Buffer[] = []
  s.on('message', (m) => got.push(m))
  return { done: Promise.resolve(got), close: () => s.close() }
}

test('the sender against the selftest receiver\'s expectations: every datagram is the pattern, every byte counted', async () => {
  const pattern = payloadPattern(MAX_PAYLOAD)
  for (const proto of ['udp', 'tcp'] as const) {
    const p = port()
    const peer = await keepAll(proto, p)
    const sender = await run(['-4', '-D', '127.0.0.1', '-p', p, '-t', '0', '-v', ...(proto === 'tcp' ? ['-z'] : []), proto])
    assert.equal(sender.code, 0, sender.stderr)
    const stats = JSON.parse(STATS.exec(sender.stderr)![1]!) as { zeroCopyBytes: number; copyBytes: number }
    if (proto === 'udp') await new Promise((r) => setTimeout(r, 200))
    const got = await peer.done
    peer.close()
    const total = got.reduce((n, b) => n + b.length, 0)
    if (proto === 'udp') {
      // UDP has no flow control: this receiver keeps what it can, and all it keeps is right.
      assert.ok(got.length > 0 && got.length <= Number(TX.exec(sender.stderr)![1]), `${got.length} datagrams`)
      for (const d of got) assert.ok(d.equals(pattern), 'each datagram is the selftest payload, whole')
    } else {
      assert.equal(total, stats.zeroCopyBytes + stats.copyBytes, 'tcp: the bytes the sender counted arrived')
      // Each send carries the payload from its start; a short send's rest follows it.
      assert.ok(Buffer.concat(got).subarray(0, MAX_PAYLOAD).equals(pattern), 'the stream starts with the payload')
    }
  }
})

/** The other side of the selftest's receiver: `count` datagrams (or a byte count over tcp). */
async function feed(proto: 'tcp' | 'udp', p: string, payloads: Buffer[]): Promise<void> {
  if (proto === 'udp') {
    const s = dgram.createSocket('udp4')
    await new Promise<void>((r) => s.connect(Number(p), '127.0.0.1', r))
    for (const d of payloads) {
      await new Promise<void>((r, j) => s.send(d, (e) => (e ? j(e) : r())))
      await new Promise((r) => setImmediate(r))
    }
    s.close()
    return
  }
  const c = net.connect(Number(p), '127.0.0.1')
  for (const d of payloads) c.write(d)
  await new Promise<void>((r) => c.end(r))
}

test('the receiver against the selftest sender\'s output: exact counts, and a wrong size or content fails it', async () => {
  const pattern = payloadPattern(MAX_PAYLOAD)
  const start = async (proto: 'tcp' | 'udp', extra: string[] = []) => {
    const p = port()
    const r = run(['-4', '-r', '-D', '127.0.0.1', '-p', p, '-t', '0', ...extra, proto])
    await bound(proto, p, r)
    return { p, r }
  }
  // udp: 40 good datagrams -> rx=40 (2 MB)
  let { p, r } = await start('udp')
  await feed('udp', p, Array.from({ length: 40 }, () => pattern))
  let out = await r
  assert.equal(out.code, 0, out.stderr)
  assert.match(out.stderr, /^rx=40 \(2 MB\)$/m)
  // udp: a datagram one byte short
  ;({ p, r } = await start('udp'))
  await feed('udp', p, [pattern, pattern.subarray(0, MAX_PAYLOAD - 1)])
  out = await r
  assert.equal(out.code, 1)
  assert.match(out.stderr, /^msg_zerocopy: recv: ret=65434 != 65435$/m)
  assert.doesNotMatch(out.stderr, /rx=/)
  // udp: the right size, a wrong byte among the first 64
  ;({ p, r } = await start('udp'))
  const wrong = Buffer.from(pattern)
  wrong[63] ^= 1
  await feed('udp', p, [wrong])
  out = await r
  assert.equal(out.code, 1)
  assert.match(out.stderr, /^msg_zerocopy: recv: data mismatch$/m)
  // udp -s 100: 100 B datagrams are right, the default size is not
  ;({ p, r } = await start('udp', ['-s', '100']))
  await feed('udp', p, [pattern.subarray(0, 100), pattern.subarray(0, 100), pattern])
  out = await r
  assert.equal(out.code, 1)
  assert.match(out.stderr, /recv: ret=65435 != 100/)
  // tcp: every byte counted, discarded without copying (5 MiB + 1)
  ;({ p, r } = await start('tcp'))
  const bytes = 5 * (1 << 20) + 1
  await feed('tcp', p, [randomBytes(bytes, 5)])
  out = await r
  assert.equal(out.code, 0, out.stderr)
  assert.match(out.stderr, /^rx=\d+ \(5 MB\)$/m)
})

test('a receiver whose bind fails exits 1 with the selftest\'s message, tcp and udp', async () => {
  for (const proto of ['tcp', 'udp']) {
    const r = await run(['-4', '-r', '-D', '192.0.2.1', '-p', port(), '-t', '0', proto])
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /^msg_zerocopy: bind: Cannot assign requested address$/m)
    assert.doesNotMatch(r.stderr, /rx=/)
  }
})

test('-f sends a file: with -z through sendFileZeroCopy (a completion per send), without as copies', async (t) => {
  const file = path.join(tempDir(t), 'sendfile_data')
  fs.writeFileSync(file, randomBytes(4 * 1024 * 1024, 61))
  const zc = await pair('tcp', ['-z', '-l', '1', '-f', file])
  assert.equal(zc.sender.code, 0, zc.sender.stderr)
  assert.equal(zc.tx[1], zc.rx[1])
  assert.equal(zc.tx[2], zc.tx[0], 'txc equals tx')
  assert.equal(zc.sentBytes % (4 * 1024 * 1024), 0, 'whole files')
  const copy = await pair('tcp', ['-f', file])
  assert.equal(copy.sender.code, 0, copy.sender.stderr)
  assert.equal(copy.tx[2], '0', 'no completions without -z')
  assert.equal(copy.tx[1], copy.rx[1])
})

test('the selftest\'s command line: its errors, messages and exit codes', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['-4', '-6', 'tcp'], /^msg_zerocopy: Pass one of -4 or -6$/m],
    [['tcp'], /^msg_zerocopy: illegal domain$/m],
    [['-4', '-D', '1.2.3', 'tcp'], /^msg_zerocopy: ipv4 parse error: 1\.2\.3$/m],
    [['-6', '-D', '127.0.0.1', 'tcp'], /^msg_zerocopy: ipv6 parse error: 127\.0\.0\.1$/m],
    [['-4', '-s', '65436', 'udp'], /^msg_zerocopy: -s: payload exceeds max \(65435\)$/m],
    [['-4', '-m', '-z', 'udp'], /^msg_zerocopy: -m: cork_mixed requires corking and zerocopy$/m],
    [['-4'], /^msg_zerocopy: Usage: msg_zerocopy \[options\] <test>$/m],
    [['-4', 'tcp', 'udp'], /Usage:/],
    [['-4', 'sctp'], /^msg_zerocopy: unknown cfg_test sctp$/m],
    [['-4', '-c', '2', 'tcp'], /^msg_zerocopy: can only cork udp sockets$/m],
    [['-4', '-i', 'nosuchif0', 'tcp'], /^msg_zerocopy: invalid iface: nosuchif0: No such device$/m],
    [['-4', 'raw'], /^msg_zerocopy: raw: not supported by this example/m],
    [['-4', '-r', 'packet'], /^msg_zerocopy: packet: not supported/m],
    [['-4', '-D'], /^msg_zerocopy: option requires an argument -- 'D'$/m],
  ]
  const results = await Promise.all(cases.map(([args]) => run(args)))
  results.forEach((r, i) => {
    assert.equal(r.code, 1, `${cases[i]![0].join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, cases[i]![1])
  })
  // An unknown option is reported and skipped, as getopt does: the run goes on.
  const p = port()
  const rx = run(['-4', '-x', '-r', '-D', '127.0.0.1', '-p', p, '-t', '0', 'udp'])
  const out = await rx
  assert.equal(out.code, 0, out.stderr)
  assert.match(out.stderr, /^msg_zerocopy: invalid option -- 'x'$/m)
  assert.match(out.stderr, /^cpu: unable to pin, may increase variance\.$/m)
  assert.match(out.stderr, /^rx=0 \(0 MB\)$/m)
})
