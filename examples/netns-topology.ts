// Network namespaces: the NIC-like sink from the project notes (kernel facts). Host A
// sends over a veth (MTU 65535) to host B, which forwards a sink prefix into a
// blackhole route: MSG_ZEROCOPY datagrams leave A without being copied, as they
// would to a real NIC. Names are unique per run and everything is removed afterwards.
import { execFileSync } from 'node:child_process'

export const SINK_ADDRESS = '198.18.0.7'
/** Host B's address on the veth: where a receiver in B listens. */
export const RECEIVER_ADDRESS = '10.231.1.2'

export interface SinkTopology {
  /** The sending namespace (host A). */
  sender: string
  /** The forwarding namespace (host B), where a receiver can run. */
  receiver: string
  /** Both namespaces' names. */
  names: string[]
  remove(): void
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns)'
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' })
  } catch {
    return 'needs iproute2 (ip)'
  }
  return undefined
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Names for {@link createSink}'s parts. */
export interface SinkOptions {
  /** The start of both namespaces' names (default 'zc'): `<prefix>-a-<id>`, `<prefix>-b-<id>`. */
  prefix?: string
  /** The veth's name in each namespace (default 'va' in A, 'vb' in B), e.g. 'eth0' in both. */
  device?: string
}

export function createSink(options: SinkOptions = {}): SinkTopology {
  const id = `${process.pid.toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
  const prefix = options.prefix ?? 'zc'
  const a = `${prefix}-a-${id}`
  const b = `${prefix}-b-${id}`
  const va = options.device ?? 'va'
  const vb = options.device ?? 'vb'
  const remove = () => {
    for (const ns of [a, b]) {
      try {
        ip('netns', 'del', ns)
      } catch {
        // not created, or already gone
      }
    }
  }
  try {
    ip('netns', 'add', a)
    ip('netns', 'add', b)
    ip('link', 'add', va, 'netns', a, 'type', 'veth', 'peer', 'name', vb, 'netns', b)
    ip('-n', a, 'link', 'set', 'lo', 'up')
    ip('-n', b, 'link', 'set', 'lo', 'up')
    ip('-n', a, 'link', 'set', va, 'mtu', '65535', 'up')
    ip('-n', b, 'link', 'set', vb, 'mtu', '65535', 'up')
    ip('-n', a, 'addr', 'add', '10.231.1.1/24', 'dev', va)
    ip('-n', b, 'addr', 'add', '10.231.1.2/24', 'dev', vb)
    execFileSync('ip', ['netns', 'exec', b, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    ip('-n', b, 'route', 'add', 'blackhole', '198.18.0.0/24')
    ip('-n', a, 'route', 'add', '198.18.0.0/24', 'via', '10.231.1.2')
  } catch (err) {
    remove()
    throw err
  }
  return { sender: a, receiver: b, names: [a, b], remove }
}

/** Which of `names` still exist as namespaces. */
export function leftoverNamespaces(names: string[]): string[] {
  const existing = execFileSync('ip', ['netns', 'list'])
    .toString()
    .split('\n')
    .map((l) => l.split(' ')[0]!)
  return names.filter((n) => existing.includes(n))
}
