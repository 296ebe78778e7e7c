// The kernel's msg_zerocopy.sh (tools/testing/selftests/net/), step for step, with one
// change: this kernel has no `dummy` module, so the "tx-only" sink that the script
// builds from a dummy device is the forwarded blackhole of examples/netns-topology.ts
// (host 2 forwards the remote prefix into a blackhole route: freed without a copy, as
// a NIC or dummy0 would). Everything else is the script's: two namespaces joined by a
// veth0 pair (MTU 65535, fixed MACs and addresses), optmem_max 1000000, the same
// command lines (-i veth0 -t 2 -C 2 ... -r / -t 1 -C 3 ... -Z 0, and -Z 1 for tx-only),
// each test run without and with -z, "OK" when all passed.
//
//   node dist/examples/msg_zerocopy-sh.js 4 udp          # one protocol, as the script
//   node dist/examples/msg_zerocopy-sh.js 6 tcp -t 1
//   node dist/examples/msg_zerocopy-sh.js                # the script's automated run: 4/6 x tcp/udp, -t 1
//
// The binary on each side is this package's example; BIN (both sides), RX_BIN or
// TX_BIN (one side) name another, e.g. TX_BIN=/tmp/msg_zerocopy for the real selftest.
// Namespaces are named NSPREFIX (default "zst-") + this pid + a random tag, and are
// removed afterwards, also on failure or a signal. Two things differ from the script:
// the receiver's exit code counts too (the script's bare `wait` ignores it), and the
// sender starts as soon as the receiver is bound, in place of the script's fixed
// `sleep 0.2` (a Node process may take longer than that to start on a loaded machine,
// and a udp receiver stops 0.4 s after its sender should: time lost here is margin lost).
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { netnsUnavailable } from './netns-topology'

const DEV = 'veth0'
const DEV_MTU = '65535'
const EXAMPLE_BIN = [process.execPath, path.join(__dirname, 'msg_zerocopy.js')]

interface Family {
  saddr: string
  daddr: string
  /** In place of the script's DUMMY_ADDR network: the prefix host 2 blackholes. */
  sinkPrefix: string
  daddrTxOnly: string
  mask: string
  nodad: string[]
}
const FAMILIES: Record<string, Family> = {
  '4': { saddr: '192.168.1.1', daddr: '192.168.1.2', sinkPrefix: '192.168.2.0/24', daddrTxOnly: '192.168.2.2', mask: '24', nodad: [] },
  '6': { saddr: 'fd::1', daddr: 'fd::2', sinkPrefix: 'fc::/64', daddrTxOnly: 'fc::2', mask: '64', nodad: ['nodad'] },
}

const binary = (side: 'RX_BIN' | 'TX_BIN'): string[] => {
  const named = process.env[side] ?? process.env.BIN
  return named ? named.split(' ').filter(Boolean) : EXAMPLE_BIN
}

function sh(args: string[]): void {
  execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** One side's run, its output passed through (stderr, as the binary prints it). */
function inNs(ns: string, args: string[]): { done: Promise<number>; kill: () => void } {
  const child = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'inherit', 'inherit'] })
  const done = new Promise<number>((resolve) => {
    child.once('error', () => resolve(127))
    child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)))
  })
  return { done, kill: () => child.kill('SIGKILL') }
}

/** Waits (up to 5 s) until something in `ns` is bound to `port` for `proto` (the receiver). */
async function bound(ns: string, proto: string, port: string): Promise<void> {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const ss = spawnSync('ip', ['netns', 'exec', ns, 'ss', '-Han', proto === 'tcp' ? '-lt' : '-u', `sport = :${port}`])
    if (ss.status === 0 && ss.stdout.toString().trim() !== '') return
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The script's topology; returns its namespaces' names and how to remove them. */
function setUp(fam: Family): { ns1: string; ns2: string; remove: () => void } {
  const tag = `${process.env.NSPREFIX ?? 'zst-'}${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`
  const ns1 = `${tag}1`
  const ns2 = `${tag}2`
  const remove = () => {
    for (const ns of [ns2, ns1]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
  }
  try {
    sh(['ip', 'netns', 'add', ns1])
    sh(['ip', 'netns', 'add', ns2])
    for (const ns of [ns1, ns2]) sh(['ip', 'netns', 'exec', ns, 'sysctl', '-w', '-q', 'net.core.optmem_max=1000000'])
    sh(['ip', 'link', 'add', DEV, 'mtu', DEV_MTU, 'netns', ns1, 'type', 'veth', 'peer', 'name', DEV, 'mtu', DEV_MTU, 'netns', ns2])
    sh(['ip', '-netns', ns1, 'link', 'set', DEV, 'up'])
    sh(['ip', '-netns', ns2, 'link', 'set', DEV, 'up'])
    sh(['ip', '-netns', ns1, 'link', 'set', 'dev', DEV, 'address', '02:02:02:02:02:02'])
    sh(['ip', '-netns', ns2, 'link', 'set', 'dev', DEV, 'address', '06:06:06:06:06:06'])
    sh(['ip', '-netns', ns1, 'addr', 'add', `${fam.saddr}/${fam.mask}`, 'dev', DEV, ...fam.nodad])
    sh(['ip', '-netns', ns2, 'addr', 'add', `${fam.daddr}/${fam.mask}`, 'dev', DEV, ...fam.nodad])
    // The script: dummy0 in ns2 with the remote prefix, and ns2's default route out of
    // it. Here: ns2 drops the remote prefix in a blackhole route while forwarding.
    sh(['ip', '-netns', ns2, 'route', 'add', 'blackhole', fam.sinkPrefix])
    sh(['ip', '-netns', ns1, 'route', 'add', 'default', 'via', fam.daddr, 'dev', DEV])
    sh(['ip', 'netns', 'exec', ns2, 'sysctl', '-wq', 'net.ipv4.ip_forward=1'])
    sh(['ip', 'netns', 'exec', ns2, 'sysctl', '-wq', 'net.ipv6.conf.all.forwarding=1'])
  } catch (err) {
    remove()
    throw err
  }
  return { ns1, ns2, remove }
}

/** One invocation of the script: `ip` is 4 or 6, `txmode` the test, `extra` the rest. Resolves to its exit code. */
async function script(ip: string, txmode: string, extra: string[]): Promise<number> {
  const fam = FAMILIES[ip]
  if (fam === undefined) {
    console.log(`Invalid IP version ${ip}`)
    return 1
  }
  // The script's receive mode: packet and raw_hdrincl are received with raw.
  const rxmode = ['packet', 'packet_dgram', 'raw_hdrincl'].includes(txmode) ? 'raw' : txmode
  const topo = setUp(fam)
  const onSignal = (code: number) => () => {
    topo.remove()
    process.exit(code)
  }
  const signals: Array<[NodeJS.Signals, () => void]> = [['SIGINT', onSignal(130)], ['SIGTERM', onSignal(143)]]
  for (const [s, f] of signals) process.once(s, f)
  let ret = 0
  try {
    const port = extra.includes('-p') ? extra[extra.indexOf('-p') + 1]! : '8000'
    const doTest = async (args: string[]) => {
      const label = args.join(' ')
      console.log(`\nipv${ip} ${txmode} ${label} tx-rx\n`)
      const rx = inNs(topo.ns2, [...binary('RX_BIN'), `-${ip}`, '-i', DEV, '-t', '2', '-C', '2', '-S', fam.saddr, '-D', fam.daddr, ...args, '-r', rxmode])
      await bound(topo.ns2, rxmode, port)
      const tx = inNs(topo.ns1, [...binary('TX_BIN'), `-${ip}`, '-i', DEV, '-t', '1', '-C', '3', '-S', fam.saddr, '-D', fam.daddr, ...args, txmode, '-Z', '0'])
      if ((await tx.done) !== 0) ret = 1
      const rxTimeout = setTimeout(rx.kill, 30000) // a receiver whose sender never came
      if ((await rx.done) !== 0) ret = 1
      clearTimeout(rxTimeout)
      // The next test is an unconnected tx to the sink, which tcp cannot exercise.
      if (txmode === 'tcp') return
      console.log(`\nipv${ip} ${txmode} ${label} tx-only\n`)
      const only = inNs(topo.ns1, [...binary('TX_BIN'), `-${ip}`, '-i', DEV, '-t', '1', '-C', '3', '-S', fam.saddr, '-D', fam.daddrTxOnly, ...args, txmode, '-Z', '1'])
      if ((await only.done) !== 0) ret = 1
    }
    await doTest(extra)
    await doTest(['-z', ...extra])
  } finally {
    topo.remove()
    for (const [s, f] of signals) process.removeListener(s, f)
  }
  if (ret === 0) console.log('OK')
  return ret
}

async function main(argv: string[]): Promise<number> {
  const why = netnsUnavailable()
  if (why !== undefined) {
    console.log(`msg_zerocopy-sh: ${why}`)
    return 4 // kselftest's "skip"
  }
  if (argv.length === 0) {
    // The script's automated test.
    let ret = 0
    for (const [ip, proto] of [['4', 'tcp'], ['6', 'tcp'], ['4', 'udp'], ['6', 'udp']] as const) {
      if ((await script(ip, proto, ['-t', '1'])) !== 0) ret = 1
    }
    if (ret === 0) console.log('OK. All tests passed')
    return ret
  }
  if (argv.length < 2) {
    console.log(`Usage: ${process.argv[1]} [4|6] [tcp|udp|raw|raw_hdrincl|packet|packet_dgram] <args>`)
    return 1
  }
  return script(argv[0]!, argv[1]!, argv.slice(2))
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      console.error(`msg_zerocopy-sh: ${err.message}`)
      process.exit(1)
    },
  )
}
