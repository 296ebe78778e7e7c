// The relay entry points' part of the fuzz (test/fuzz-entry-points.test.ts): each run
// gets a fresh client <-> a ... b <-> server chain of loopback connections whose far
// ends have already sent their bytes and ended, so that every valid relay() or
// receiveToFile() settles by itself, and judges what arrived.
import * as fs from 'node:fs'
import type * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import * as fc from 'fast-check'
import { chain, closed, type Chain } from '../relay-util'
import { Arg, Fresh, MAYBE, RANGE, TYPE, optionsArg, type Env, type Field } from './args'

/** What each far end sends before the call (then it ends). */
export const PAYLOAD = 1000

export class RelayWorld implements Env {
  private cleanup: Array<() => void | Promise<void>> = []
  private constructor(
    readonly c: Chain,
    readonly dir: string,
    readonly handle: fs.promises.FileHandle,
  ) {}

  static async open(dir: string): Promise<RelayWorld> {
    const c = await chain()
    for (const s of [c.client, c.proxyIn, c.proxyOut, c.server]) s.on('error', () => {})
    c.client.end(Buffer.alloc(PAYLOAD, 0x61))
    c.server.end(Buffer.alloc(PAYLOAD, 0x62))
    const w = new RelayWorld(c, dir, await fs.promises.open(path.join(dir, 'handle'), 'w'))
    w.later(() => w.handle.close())
    return w
  }

  fd(kind: string): number {
    if (kind === 'closed') {
      const fd = fs.openSync('/dev/null', 'r')
      fs.closeSync(fd)
      return fd
    }
    const file = path.join(this.dir, 'rw')
    const fd = fs.openSync(file, kind === 'file(r)' ? 'a+' : 'w')
    if (kind === 'file(r)') {
      fs.closeSync(fd)
      const ro = fs.openSync(file, 'r')
      this.later(() => fs.closeSync(ro))
      return ro
    }
    this.later(() => fs.closeSync(fd))
    return fd
  }

  obj(kind: string): unknown {
    const { c } = this
    const fdOf = (s: net.Socket) => (s as unknown as { _handle: { fd: number } })._handle.fd
    switch (kind) {
      case 'a': return c.proxyIn
      case 'b': return c.proxyOut
      case 'a fd': return fdOf(c.proxyIn)
      case 'b fd': return fdOf(c.proxyOut)
      case 'destroyed a':
        return c.proxyIn.destroy()
      case 'destroyed b':
        return c.proxyOut.destroy()
      case 'tls': {
        const t = new tls.TLSSocket(c.proxyOut)
        this.later(() => void t.destroy())
        return t
      }
      case 'path': return path.join(this.dir, 'upload')
      case 'directory': return this.dir
      case 'FileHandle': return this.handle
      default: throw new Error(`no object of kind ${kind}`)
    }
  }

  later(fn: () => void | Promise<void>): void {
    this.cleanup.push(fn)
  }

  async close(): Promise<void> {
    for (const fn of this.cleanup.splice(0)) await fn()
    await this.c.close()
    for (const s of [this.c.client, this.c.proxyIn, this.c.proxyOut, this.c.server]) await closed(s)
  }
}

const val = (label: string, v: unknown, bad: string[] = []) => new Arg(label, () => v, bad)
const obj = (kind: string, bad: string[] = []) => new Arg(kind, (e) => e.obj(kind), bad)
const fdOf = (kind: string, bad: string[] = []) => new Arg(`fd(${kind})`, (e) => e.fd(kind), bad)

const ODD: Array<[string, unknown, string[]]> = [
  ["'3'", '3', [TYPE]], ['{}', {}, [TYPE]], ['null', null, [TYPE]], ['undefined', undefined, [TYPE]], ['3n', 3n, [TYPE]],
  ['-1', -1, [RANGE]], ['1.5', 1.5, [RANGE]], ['NaN', NaN, [RANGE]], ['2**31', 2 ** 31, [RANGE]],
]
// A string is a path to receiveToFile: not among its odd files.
const odd = (strings = true) => fc.constantFrom(...ODD.filter(([, v]) => strings || typeof v !== 'string').map(([l, v, b]) => val(l, v, b)))

/** relay()'s `a` or `b`: the chain's socket (or its fd), or what must be refused. */
export function endArg(which: 'a' | 'b'): fc.Arbitrary<Arg> {
  const good = [obj(which), new Arg(`${which} fd`, (e) => e.obj(`${which} fd`))]
  const bad = [
    obj(`destroyed ${which}`, ['ERR_SOCKET_CLOSED']), obj('tls', ['ERR_ZEROCOPY_PROTOCOL_LAYER']),
    // A closed number may be taken again before it is checked: by the call's own file,
    // or by the other argument's fd (then a === b).
    fdOf('closed', ['EBADF', 'ERR_INVALID_FD_TYPE', 'ERR_INVALID_ARG_VALUE']),
    fdOf('file(w)', ['ERR_INVALID_FD_TYPE']),
  ]
  return fc.oneof({ withCrossShrink: true }, { arbitrary: fc.constantFrom(...good), weight: 4 }, { arbitrary: fc.constantFrom(...bad), weight: 1 }, { arbitrary: odd(), weight: 1 })
}

/** receiveToFile()'s `file`. */
export function fileArg(): fc.Arbitrary<Arg> {
  const good = [obj('path'), obj('FileHandle'), fdOf('file(w)')]
  const bad = [obj('directory', ['EISDIR']), fdOf('file(r)', ['EBADF']), fdOf('closed', ['EBADF'])]
  return fc.oneof({ withCrossShrink: true }, { arbitrary: fc.constantFrom(...good), weight: 4 }, { arbitrary: fc.constantFrom(...bad), weight: 1 }, { arbitrary: odd(false), weight: 1 })
}

const count = (valid: number[], extra: Field = []): Field => [
  ...valid.map((v): [string, unknown, string[]] => [String(v), v, []]),
  ['-1', -1, [RANGE]], ['1.5', 1.5, [RANGE]], ['NaN', NaN, [RANGE]], ['2**53', 2 ** 53, [RANGE]], ["'5'", '5', [TYPE]], ['5n', 5n, [TYPE]],
  ...extra,
]
const common: Record<string, Field> = {
  signal: [
    ['a live signal', new Fresh(() => new AbortController().signal), []],
    ['an aborted signal', new Fresh(() => AbortSignal.abort()), ['ABORT_ERR']],
    ['{ aborted: true }', { aborted: true }, [TYPE]],
  ],
  mechanism: [['auto', 'auto', []], ['copy', 'copy', []], ['splice', 'splice', []], ["'zero'", 'zero', ['ERR_INVALID_ARG_VALUE']], ['1', 1, ['ERR_INVALID_ARG_VALUE']]],
  bufferSize: count([4096, 65536, 1 << 20], [['4095', 4095, [RANGE]], ['2**27', 2 ** 27, [RANGE]]]),
}

/** relay() options; `length` needs a direction, and at most PAYLOAD bytes come. */
export const relayOptionsArg = (): fc.Arbitrary<Arg> =>
  optionsArg({
    ...common,
    direction: [['both', 'both', []], ["'a->b'", 'a->b', []], ["'b->a'", 'b->a', []], ["'up'", 'up', ['ERR_INVALID_ARG_VALUE']]],
    length: count([0, 1, PAYLOAD], [[String(PAYLOAD + 1), PAYLOAD + 1, ['ERR_STREAM_PREMATURE_CLOSE']]]),
  })

export const fileOptionsArg = (): fc.Arbitrary<Arg> =>
  optionsArg({ ...common, offset: count([0, 1, 4096]), length: count([0, 1, PAYLOAD], [[String(PAYLOAD + 1), PAYLOAD + 1, ['ERR_STREAM_PREMATURE_CLOSE']]]) })

/** What a relay with these options must have moved: [a -> b, b -> a]. */
export function expectedRelay(o: { direction?: unknown; length?: unknown } | undefined): [number, number] {
  const d = o?.direction ?? 'both'
  const n = typeof o?.length === 'number' ? o.length : PAYLOAD
  return [d === 'b->a' ? 0 : n, d === 'a->b' ? 0 : n]
}

export { MAYBE }
