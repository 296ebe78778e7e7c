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
import { createSink, leftoverNamespaces, netnsUnavailable, SINK_ADDRESS } from '../examples/netns-topology'
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

// SO_REUSEPORT, as the selftest's receivers set it: Node's reusePort (22.12 and later).
const hasReusePort = (() => {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number]
  return major > 22 || (major === 22 && minor >= 12)
})()
// (UDP: a TCP receiver waits for its connection, so a second idle one would not end.)
test('two udp receivers on one port both bind and both end with their rx= line (SO_REUSEPORT, as the selftest\'s)', { skip: !hasReusePort && 'Node before 22.12 has no reusePort' }, async () => {
  const p = port()
  const first = run(['-4', '-r', '-D', '127.0.0.1', '-p', p, '-t', '1', 'udp'])
  await bound('udp', p, first)
  const second = await run(['-4', '-r', '-D', '127.0.0.1', '-p', p, '-t', '0', 'udp'])
  const firstDone = await first
  for (const r of [firstDone, second]) {
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, RX)
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
    // What the selftest's receiver refuses itself, after pinning: its words, not Node's limits.
    [['-4', '-r', 'packet'], /^cpu: unable to pin, may increase variance\.\nmsg_zerocopy: Use PF_INET\/SOCK_RAW to read\n$/],
    [['-4', '-r', 'packet_dgram'], /^cpu: unable to pin, may increase variance\.\nmsg_zerocopy: Use PF_INET\/SOCK_RAW to read\n$/],
    [['-4', '-r', 'raw_hdrincl'], /^cpu: unable to pin, may increase variance\.\nmsg_zerocopy: IPPROTO_RAW: not supported on Rx\n$/],
    // Its format ends in "\n" and error() adds one: an empty line follows.
    [['-4', 'rds'], /^msg_zerocopy: -D <server addr> required for PF_RDS\n\n$/],
    // A negative -s is an int the selftest takes; the kernel refuses the send's size_t length.
    [['-4', '-D', '127.0.0.1', '-p', '9', '-s', '-1', 'udp'], /^cpu: unable to pin, may increase variance\.\nmsg_zerocopy: send: Invalid argument\n$/],
    [['-4', '-D', '127.0.0.1', '-p', '9', '-s', '-1', '-c', '2', 'udp'], /^msg_zerocopy: send: Invalid argument$/m],
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
  // -c -1 (strtol takes it): the selftest corks and sends nothing, round after round.
  const none = await run(['-4', '-D', '127.0.0.1', '-p', port(), '-t', '0', '-c', '-1', '-z', 'udp'])
  assert.equal(none.code, 0, none.stderr)
  assert.match(none.stderr, /^tx=0 \(0 MB\) txc=0 zc=n$/m)
})

// ---- -c, -m, -v: corking and the notifications' lines --------------------------------

const COMPLETED = /^completed: (\d+) \(h=(\d+) l=(\d+)\)$/gm
/** A udp receiver's -t for pairs run side by side (getopt: the last -t counts). */
// Receivers of side-by-side pairs wait this long for their senders: ten Node processes
// start at once, and under the AddressSanitizer build (ZEROCOPY_NATIVE) a start took
// over 2 s on a busy machine (the sender then met a receiver gone: ECONNREFUSED).
const LONGER = ['-t', process.env.ZEROCOPY_NATIVE ? '6' : '3']

test('udp -c: corked datagrams pass the example receiver whole; tx counts sends, txc the zero-copy ones, as the selftest counts', async () => {
  // Concurrent pairs (their own ports): the counts, not the rates, are checked. Ten
  // Node processes start at once: each receiver waits LONGER for its sender.
  const [plain, zc, mixed, expectNot, empty] = await Promise.all([
    pair('udp', ['-c', '4'], LONGER),
    pair('udp', ['-c', '4', '-z', '-Z', '0'], LONGER),
    pair('udp', ['-c', '3', '-m', '-z'], LONGER),
    pair('udp', ['-c', '4', '-z', '-Z', '1'], LONGER),
    pair('udp', ['-s', '0', '-z'], ['-s', '0', ...LONGER]),
  ])
  // (Not corked, the same rule: -s 0 sends empty datagrams and counts none of them in
  // tx=, while each still takes an id, its UDP header being what the kernel copies.)
  assert.equal(empty.sender.code, 0, empty.sender.stderr)
  assert.deepEqual(empty.tx.slice(0, 2), ['0', '0'])
  assert.ok(Number(empty.tx[2]) > 0 && Number(empty.rx[0]) > 0, `${empty.sender.stderr}\n${empty.receiver.stderr}`)
  for (const r of [plain, zc, mixed, expectNot]) {
    assert.equal(r.receiver.code, 0, `every corked datagram had -s bytes of the payload: ${r.receiver.stderr}`)
    assert.ok(Number(r.rx[0]) > 0, `the receiver got datagrams: ${r.receiver.stderr}`)
  }
  // -c 4: four sends per datagram, each counted; one datagram of 65435 B per four.
  assert.equal(plain.sender.code, 0, plain.sender.stderr)
  const sends = Number(plain.tx[0])
  assert.ok(sends > 0 && sends % 4 === 0, `tx=${sends}`)
  assert.equal(plain.sentBytes, (sends / 4) * MAX_PAYLOAD)
  assert.ok(Number(plain.rx[0]) <= sends / 4, 'no more datagrams than were sent')
  assert.deepEqual([plain.tx[2], plain.tx[3]], ['0', 'n'])
  // -z: each send takes an id and comes back (copied on loopback, as -Z 0 says).
  assert.equal(zc.sender.code, 0, zc.sender.stderr)
  assert.equal(Number(zc.tx[0]) % 4, 0)
  assert.equal(zc.tx[2], zc.tx[0], 'txc = tx')
  assert.doesNotMatch(zc.sender.stderr, /serr:|missing/)
  // -m: sends alternate copy, zero-copy, copy: one id per datagram.
  assert.equal(mixed.sender.code, 0, mixed.sender.stderr)
  assert.equal(Number(mixed.tx[0]) % 3, 0)
  assert.equal(Number(mixed.tx[2]) * 3, Number(mixed.tx[0]), 'txc = tx / 3')
  // -Z 1 on loopback: the selftest's serr line once, exit 1, zc=n.
  assert.equal(expectNot.sender.code, 1)
  assert.equal(expectNot.sender.stderr.match(/^serr: ee_code: 0 != expected 1$/gm)?.length, 1, expectNot.sender.stderr)
  assert.equal(expectNot.tx[3], 'n')
})

test('a corked datagram is what the selftest sends: -c n sends from the payload start, the first taking the remainder', async (t) => {
  const p = port()
  const peer = await keepAll('udp', p)
  t.after(() => peer.close())
  const sender = await run(['-4', '-D', '127.0.0.1', '-p', p, '-t', '0', '-c', '3', '-s', '1000', '-z', 'udp'])
  assert.equal(sender.code, 0, sender.stderr)
  await new Promise((r) => setTimeout(r, 200))
  const got = await peer.done
  const pattern = payloadPattern(334)
  const expected = Buffer.concat([pattern, pattern.subarray(0, 333), pattern.subarray(0, 333)])
  assert.ok(got.length > 0)
  for (const d of got) assert.ok(d.equals(expected), 'one datagram of 334 + 333 + 333 bytes, each from the pattern start')
  assert.equal(Number(TX.exec(sender.stderr)![1]) % 3, 0)
})

test('-v -v: a completed: line per notification, their ranges adding up to txc (corked and not, udp and tcp)', async () => {
  const [corked, plain, tcp] = await Promise.all([pair('udp', ['-c', '2', '-z', '-v'], LONGER), pair('udp', ['-z', '-v'], LONGER), pair('tcp', ['-z', '-v', '-l', '8'])])
  for (const r of [corked, plain, tcp]) {
    assert.equal(r.sender.code, 0, r.sender.stderr)
    const lines = [...r.sender.stderr.matchAll(COMPLETED)].map((m) => m.slice(1).map(Number) as [number, number, number])
    assert.ok(lines.length > 0, r.sender.stderr.slice(0, 500))
    for (const [range, hi, lo] of lines) assert.equal(range, hi - lo + 1)
    assert.equal(lines.reduce((n, [range]) => n + range, 0), Number(r.tx[2]), 'the ranges add up to txc')
  }
  // The corked sender reads the kernel's ids itself: from 0, each range after the last.
  const ranges = [...corked.sender.stderr.matchAll(COMPLETED)].map((m) => [Number(m[3]), Number(m[2])])
  ranges.forEach(([lo], i) => assert.equal(lo, i === 0 ? 0 : ranges[i - 1]![1]! + 1))
  assert.doesNotMatch(corked.sender.stderr, /^gap:/m)
})

/** The example (or `bin`) as a sender inside namespace `ns`; its exit code and stderr. */
function runIn(ns: string, args: string[], bin: string[] = [process.execPath, EXAMPLE]): Promise<Run> {
  const child = spawn('ip', ['netns', 'exec', ns, ...bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 20000)
  return new Promise<Run>((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, stderr })
    }),
  )
}

test('corked -z into the namespace sink: the kernel copies a corked datagram, so -Z 1 fails there as in the selftest', async (t) => {
  const why = netnsUnavailable()
  if (why !== undefined) return t.skip(why)
  const topo = createSink({ prefix: 'zcst' })
  t.after(() => {
    topo.remove()
    assert.deepEqual(leftoverNamespaces(topo.names), [])
  })
  const to = ['-4', '-D', SINK_ADDRESS, '-t', '0', '-z']
  const [plain, corked, corkedCopied] = await Promise.all([
    runIn(topo.sender, [...to, '-Z', '1', 'udp']),
    runIn(topo.sender, [...to, '-c', '4', '-Z', '1', 'udp']),
    runIn(topo.sender, [...to, '-c', '4', '-Z', '0', 'udp']),
  ])
  // The sink itself frees plain MSG_ZEROCOPY datagrams without a copy ...
  assert.equal(plain.code, 0, plain.stderr)
  assert.match(plain.stderr, /zc=y$/m)
  // ... but a datagram built under UDP_CORK is copied (no checksum offload for it).
  assert.equal(corked.code, 1, corked.stderr)
  assert.equal(corked.stderr.match(/^serr: ee_code: 0 != expected 1$/gm)?.length, 1, corked.stderr)
  const tx = TX.exec(corked.stderr)
  assert.ok(tx && Number(tx[1]) % 4 === 0 && tx[3] === tx[1] && tx[4] === 'n', corked.stderr)
  assert.equal(corkedCopied.code, 0, corkedCopied.stderr)
  assert.doesNotMatch(corkedCopied.stderr, /serr:/)
})

// The kernel's own selftest binary, where one was built (SELFTEST_BIN=/path/to/msg_zerocopy;
// the repository holds none of its code): corked runs cross each way, and the same
// command lines give the same lines and exit codes.
const SELFTEST = process.env.SELFTEST_BIN
test('cross-run against the real selftest (SELFTEST_BIN): corked senders and receivers either way', { skip: SELFTEST === undefined && 'SELFTEST_BIN is not set' }, async () => {
  const bin = SELFTEST!
  const real = (args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      child.once('close', (code) => resolve({ code: code ?? -1, stderr }))
    })
  const cross = async (tx: typeof run, rx: typeof run, args: string[]) => {
    const p = port()
    const size = args.includes('-s') ? ['-s', args[args.indexOf('-s') + 1]!] : []
    const receiver = rx(['-4', '-r', '-D', '127.0.0.1', '-p', p, '-t', '1', ...size, 'udp'])
    await bound('udp', p, receiver)
    const sender = await tx(['-4', '-D', '127.0.0.1', '-p', p, '-t', '0', ...args, 'udp'])
    return { sender, receiver: await receiver }
  }
  for (const [tx, rx, who] of [[real, run, 'selftest -> example'], [run, real, 'example -> selftest']] as const) {
    for (const args of [['-c', '4', '-z'], ['-c', '3', '-m', '-z', '-Z', '0'], ['-c', '5', '-s', '1001']]) {
      const r = await cross(tx, rx, args)
      const label = `${who} ${args.join(' ')}`
      assert.equal(r.receiver.code, 0, `${label}: ${r.receiver.stderr}`)
      assert.equal(r.sender.code, 0, `${label}: ${r.sender.stderr}`)
      const m = TX.exec(r.sender.stderr)
      assert.ok(m && Number(m[1]) % Number(args[1]) === 0, `${label}: ${r.sender.stderr}`)
      if (args.includes('-m')) assert.equal(Number(m[3]) * 3, Number(m[1]), label)
      else if (args.includes('-z')) assert.equal(m[3], m[1], label)
      assert.match(r.receiver.stderr, /^rx=[1-9]\d* \(\d+ MB\)$/m, label)
    }
  }
  // The same command lines, alone: the same lines (less the numbers) and exit codes.
  const shape = (r: Run) => `${r.code}\n${r.stderr.replace(/^[^\s:]*msg_zerocopy(\.js)?: /gm, 'PROG: ').replace(/\d+/g, 'N')}`
  for (const args of [
    ['-4', '-D', '127.0.0.1', '-p', '9', '-t', '0', '-c', '-1', '-z', '-Z', '1', 'udp'],
    ['-4', '-c', '2', 'tcp'],
    ['-4', '-r', '-c', '2', 'raw_hdrincl'],
    ['-4', '-m', '-c', '2', 'udp'],
    ['-4', '-D', '127.0.0.1', '-p', '9', '-s', '-3', '-c', '2', 'udp'],
  ]) {
    const [a, b] = await Promise.all([real(args), run(args)])
    assert.equal(shape(b), shape(a), args.join(' '))
  }
})
