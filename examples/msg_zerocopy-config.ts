// The msg_zerocopy example's command line: the kernel selftest's (tools/testing/
// selftests/net/msg_zerocopy.c) option for option, default for default, check for
// check and in the same order, so that a script cannot tell the two apart; plus -f.
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as util from 'node:util'
import { setSocketOption } from '../lib'
import { atoi, getopt, strtoi } from './getopt'

export const PROG = 'msg_zerocopy'

/** The selftest's getopt string, and -f (this example's extension: send a file). */
const OPTSTRING = '46c:C:D:i:l:mp:rs:S:t:vzZ:f:'

/**
 * The selftest's largest payload, and its default for every protocol: an IP packet's
 * maximum (65535) less an IPv6 header, a TCP header and 40 bytes of TCP options.
 */
export const MAX_PAYLOAD = 65535 - 40 - 20 - 40

/** Tests the selftest knows; only tcp and udp can be done from Node (main says why not for the others). */
const SELFTEST_TESTS = ['packet', 'packet_dgram', 'raw', 'raw_hdrincl', 'tcp', 'udp', 'rds']

export interface Config {
  family: 4 | 6
  /** -D: where a sender connects and a receiver binds (the selftest's cfg_dst_addr; any address if absent). */
  dst: string
  /** -S: the selftest uses it only for raw headers and RDS; kept for -v. */
  src: string | undefined
  port: number
  receiver: boolean
  payload: number
  /** -t: 200 ms + t seconds, as the selftest computes it. */
  runtimeMs: number
  zerocopy: boolean
  verbose: number
  /** -l: sends between reads of completions (the selftest's notification limit); here sends per batch. */
  notificationLimit: number
  /** -Z: the zero-copy result the run expects (1: not copied, 0: copied); -1 when not given. */
  expectZerocopy: -1 | 0 | 1
  /** -C: the cpu to pin to; -1 (the default) pins nowhere, and says so, as the selftest does. */
  cpu: number
  /** -c: sends per datagram under UDP_CORK (0: no corking; as strtol reads it, so possibly negative). */
  cork: number
  /** -m: inside a corked datagram, alternate copy and zero-copy sends. */
  corkMixed: boolean
  file: string | undefined
  /** The test: tcp or udp run; the selftest's others are known, and refused where it runs them (see main). */
  test: string
}

/** A fatal error: printed as glibc's error(1, ...) prints it, and the exit code 1. */
export class Fatal extends Error {}

/** glibc's strerror texts where libuv's words differ (libuv's otherwise, capitalized as glibc's). */
const GLIBC_TEXT: Record<string, string> = {
  EADDRNOTAVAIL: 'Cannot assign requested address',
  ECONNRESET: 'Connection reset by peer',
  EMSGSIZE: 'Message too long',
  ENETUNREACH: 'Network is unreachable',
  EHOSTUNREACH: 'No route to host',
  ENOBUFS: 'No buffer space available',
  ETIMEDOUT: 'Connection timed out',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  EAGAIN: 'Resource temporarily unavailable',
  EFAULT: 'Bad address',
  EINVAL: 'Invalid argument',
}

/** The strerror text of a Node SystemError, as glibc's error() prints it. */
export function strerror(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined
  if (e?.code !== undefined && GLIBC_TEXT[e.code] !== undefined) return GLIBC_TEXT[e.code]!
  const entry = typeof e?.errno === 'number' ? util.getSystemErrorMap().get(e.errno) : undefined
  const text = entry?.[1] ?? e?.message ?? String(err)
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** The selftest's do_setsockopt (an int option); its failure: "setsockopt <level>.<name>: <value>: <strerror>". */
export function setOption(fd: number, level: number, name: number, value: number): void {
  try {
    setSocketOption(fd, level, name, value)
  } catch (err) {
    throw new Fatal(`setsockopt ${level}.${name}: ${value}: ${strerror(err)}`)
  }
}

function address(family: 4 | 6 | undefined, text: string | undefined): string {
  if (family === undefined) throw new Fatal('illegal domain')
  if (text === undefined) return family === 4 ? '0.0.0.0' : '::'
  const ok = family === 4 ? net.isIPv4(text) : net.isIPv6(text) && !text.includes('%')
  if (!ok) throw new Fatal(`ipv${family} parse error: ${text}`)
  return text
}

/** if_nametoindex: the interface must exist in this network namespace. */
function checkInterface(name: string): void {
  const ok = name.length > 0 && name.length < 16 && !name.includes('/') && name !== '.' && name !== '..'
  if (!ok || !fs.existsSync(`/sys/class/net/${name}/ifindex`)) throw new Fatal(`invalid iface: ${name}: No such device`)
}

export function parseArgs(argv: readonly string[]): Config {
  let family: 4 | 6 | undefined
  let daddr: string | undefined
  let saddr: string | undefined
  const cfg = {
    port: 8000,
    receiver: false,
    payload: MAX_PAYLOAD,
    runtimeMs: 4200,
    zerocopy: false,
    verbose: 0,
    notificationLimit: 32,
    expectZerocopy: -1 as -1 | 0 | 1,
    cpu: -1,
    cork: 0,
    corkMixed: false,
    file: undefined as string | undefined,
  }
  const parsed = getopt(argv, OPTSTRING, (message) => console.error(`${PROG}: ${message}`))
  for (const { letter, value = '' } of parsed.options) {
    switch (letter) {
      case '4':
      case '6':
        if (family !== undefined) throw new Fatal('Pass one of -4 or -6')
        family = letter === '4' ? 4 : 6
        break
      case 'c': cfg.cork = strtoi(value); break
      case 'C': cfg.cpu = strtoi(value); break
      case 'D': daddr = value; break
      case 'i': checkInterface(value); break
      case 'l': cfg.notificationLimit = strtoi(value); break
      case 'm': cfg.corkMixed = true; break
      case 'p': cfg.port = strtoi(value) & 0xffff; break // the selftest's htons() keeps 16 bits
      case 'r': cfg.receiver = true; break
      case 's': cfg.payload = strtoi(value); break
      case 'S': saddr = value; break
      case 't': cfg.runtimeMs = 200 + strtoi(value, 10) * 1000; break
      case 'v': cfg.verbose++; break
      case 'z': cfg.zerocopy = true; break
      case 'Z': cfg.expectZerocopy = atoi(value) !== 0 ? 1 : 0; break
      case 'f': cfg.file = value; break
      default: break // '?': getopt has said why; the selftest goes on too
    }
  }
  // The selftest's checks after its getopt loop, in its order.
  if (parsed.last === 'rds') {
    // (The selftest's format ends in "\n", and error() adds its own: an empty line follows.)
    if (daddr === undefined) throw new Fatal('-D <server addr> required for PF_RDS\n')
    if (!cfg.receiver && saddr === undefined) throw new Fatal('-S <client addr> required for PF_RDS\n')
  }
  const dst = address(family, daddr)
  const src = saddr === undefined ? undefined : address(family, saddr)
  // A negative -s passes, as in the selftest (its int): the kernel refuses the send later.
  if (cfg.payload > MAX_PAYLOAD) throw new Fatal(`-s: payload exceeds max (${MAX_PAYLOAD})`)
  if (cfg.corkMixed && (!cfg.zerocopy || !cfg.cork)) throw new Fatal('-m: cork_mixed requires corking and zerocopy')
  if (parsed.operands.length !== 1) throw new Fatal(`Usage: ${PROG} [options] <test>`)
  const test = parsed.operands[0]!
  if (!SELFTEST_TESTS.includes(test)) throw new Fatal(`unknown cfg_test ${test}`)
  if (cfg.cork && test !== 'udp') throw new Fatal('can only cork udp sockets')
  if (cfg.file !== undefined && test !== 'tcp') throw new Fatal('-f: a file goes over tcp only')
  if (cfg.file !== undefined && !cfg.receiver && !fs.existsSync(cfg.file)) throw new Fatal(`-f: ${cfg.file}: No such file or directory`)
  return { ...cfg, family: family!, dst, src, test }
}
