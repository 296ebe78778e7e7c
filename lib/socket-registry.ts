// One SendChannel per kernel socket, found by the socket's own identity (its cookie),
// not by the JS object or fd number that names it: a net.Socket, a dgram.Socket and any
// fd of the same socket reach the same channel, so they share one queue and one id
// counter. A channel made while a relay writes into its socket takes that relay's turn
// (lib/relay-turn.ts) as its first request.
//
// The kernel numbers a socket's MSG_ZEROCOPY sends once for the socket's whole life
// and never restarts. When a channel closes (no instance uses it and nothing is in
// flight) the next id is remembered here, so a later attach continues from it. An entry
// is dropped once no fd of this process refers to its socket any more (checked from
// /proc/self/fd when the table has doubled since the last check): such a socket can
// only be closed, and its cookie is never reused.
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import type * as net from 'node:net'
import { native } from './native'
import { chooseEngine, type EngineOption } from './engine'
import { dgramSocketFd } from './node-internals'
import { takeWaitingTurn, type RelayTurn } from './relay-turn'
import { SendChannel } from './send-channel'

const { SOCK_DGRAM, SOCK_STREAM, AF_INET, AF_INET6 } = native.constants
const IPPROTO_TCP = 6

// Only channels that are not closed are held here: a channel leaves this map the moment
// it concludes (SendChannel.closeFd calls forget), so nothing here keeps a socket whose
// channel is done reachable.
const channels = new Map<string, SendChannel>()
/**
 * What outlives a closed channel: the next id, and weakly the Node socket, if it had
 * one, and the channel itself (which instances still holding it answer for).
 */
interface Remembered {
  nextId: number
  inode: number
  source: WeakRef<net.Socket | dgram.Socket> | undefined
  channel: WeakRef<SendChannel>
}
const remembered = new Map<string, Remembered>()
let pruneAt = 256

export interface ChannelOptions {
  copiedThreshold: number
  lingerMs: number
  engine: EngineOption
}

/**
 * The channel of the socket behind `nodeFd` (Node's or the caller's number, used only
 * here, synchronously), made if there is none. `source` is the Node socket, if any.
 */
export function channelFor(nodeFd: number, source: net.Socket | dgram.Socket | undefined, options: ChannelOptions): SendChannel {
  const id = native.socketIdentity(nodeFd) // ENOTSOCK for anything else
  const existing = channels.get(id.key)
  if (existing !== undefined) {
    existing.adoptSource(source)
    return existing
  }
  const memory = remembered.get(id.key)
  const closed = answeringChannel(id.key)
  if (closed !== undefined) return closed
  // An fd call on a socket once attached by its Node object keeps ordering with Node's
  // writes: the channel gates that socket again.
  const known = source ?? liveSource(memory?.source?.deref())
  const { engine, fallback } = chooseEngine(options.engine)
  const fd = native.dupFd(nodeFd)
  let channel: SendChannel
  try {
    channel = new SendChannel({
      key: id.key,
      inode: id.inode,
      fd,
      datagram: id.type === SOCK_DGRAM,
      tcp: id.type === SOCK_STREAM && (id.domain === AF_INET || id.domain === AF_INET6) && id.protocol === IPPROTO_TCP,
      source: known,
      firstId: memory?.nextId ?? 0,
      engine,
      engineFallback: fallback,
      copiedThreshold: options.copiedThreshold,
      lingerMs: options.lingerMs,
      // io_uring's releases never touch the error queue: only the epoll engine must copy.
      noZeroCopy: engine === 'epoll' && source instanceof dgram.Socket && libuvReadsUdpErrorQueue() ? dgramReason(fallback) : undefined,
      origin: known === undefined ? nodeFd : undefined,
      onClosed: forget,
    })
  } catch (err) {
    native.closeFd(fd)
    throw err
  }
  remembered.delete(id.key)
  channels.set(id.key, channel)
  // A relay writes into this socket: the channel's first request is its turn, so the
  // sends made from now on wait for the relay's end.
  const turn = takeWaitingTurn(id.key)
  if (turn !== undefined) enterTurn(channel, turn)
  return channel
}

/**
 * The channel of the socket with this kernel identity, if one was made: the open one,
 * or a closed one an instance still answers for with the socket's error (a relay into
 * that socket is refused with it).
 */
export function channelOf(key: string): SendChannel | undefined {
  return channels.get(key) ?? answeringChannel(key)
}

/** A closed channel, while an instance still answers for it with the socket's error. */
function answeringChannel(key: string): SendChannel | undefined {
  const closed = remembered.get(key)?.channel.deref()
  if (closed === undefined || !closed.answering) return undefined
  return closed.followed === undefined || liveSource(closed.followed) !== undefined ? closed : undefined
}

/** Queues a relay's turn on `channel`; the turn wakes the channel when it ends. */
export function enterTurn(channel: SendChannel, turn: RelayTurn): void {
  turn.entered(() => channel.handle({ type: 'sourceReady', req: turn }))
  channel.handle({ type: 'enqueue', req: turn })
}

/** A channel concluded (closed): from now on only weakly known, by what it leaves behind. */
function forget(channel: SendChannel): void {
  if (channels.get(channel.key) !== channel) return
  channels.delete(channel.key)
  const source = liveSource(channel.nodeSource)
  if (channel.nextId === 0 && source === undefined && !channel.answering) return // nothing to carry over
  remembered.set(channel.key, { nextId: channel.nextId, inode: channel.inode, source: source && new WeakRef(source), channel: new WeakRef(channel) })
  if (remembered.size >= pruneAt) prune()
}

/** A Node socket still open, or undefined. */
function liveSource(s: net.Socket | dgram.Socket | undefined): net.Socket | dgram.Socket | undefined {
  if (s === undefined) return undefined
  if ('destroyed' in s) return s.destroyed ? undefined : s
  return dgramSocketFd(s) === undefined ? undefined : s
}

/** Drops the entries of sockets no fd of this process refers to any more. */
function prune(): void {
  const live = new Set<number>()
  try {
    for (const name of fs.readdirSync('/proc/self/fd')) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${name}`))
        if (m !== null) live.add(Number(m[1]))
      } catch {
        // closed while we looked
      }
    }
  } catch {
    return // no /proc: keep everything
  }
  for (const [key, entry] of remembered) if (!live.has(entry.inode)) remembered.delete(key)
  pruneAt = Math.max(256, 2 * remembered.size)
}

/**
 * Whether this process's libuv drains the error queue of the UDP sockets it watches
 * (libuv 1.52 and later, so Node 24+): it would consume the MSG_ZEROCOPY completions of
 * a dgram.Socket, and Node would emit each one as an empty 'message'. Such sockets
 * send copies instead.
 * @internal
 */
export function libuvReadsUdpErrorQueue(uvVersion = process.versions.uv ?? '0.0.0'): boolean {
  const [major = 0, minor = 0] = uvVersion.split('.').map(Number)
  return major > 1 || (major === 1 && minor >= 52)
}

function dgramReason(noUring: string | undefined): string {
  const why = noUring === undefined ? 'the epoll engine was chosen' : `io_uring cannot run here: ${noUring}`
  return `libuv ${process.versions.uv} reads this dgram socket's error queue (it would take the MSG_ZEROCOPY completions and Node would emit them as empty messages), and ${why}; sending copies`
}

/** Channels the registry holds now (for lifetime tests). @internal */
export function registrySize(): number {
  return channels.size
}
