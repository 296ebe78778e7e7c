// Model-based test of the send contract (see test/model/): random sequences of sends,
// copies, files, Node writes, corks, closes, re-attaches, fd-named calls, aborts and
// peer actions on one loopback TCP pair, checked against the byte stream the model
// expects; and the same over a TLS connection, where the sender is the server side's
// TLS socket and every call takes the honest copy path, and over an HTTP/2 stream
// (fd-named calls do not apply to either). Invariants, at the end of each sequence:
//   1. the peer's bytes equal the model's (with a reset, destroy or abort: a prefix of it);
//   2. every Promise settles, in bounded time (and every socket.write callback runs once);
//   3. buffers and files overwritten with 0xEE once their send settled never reach the peer;
//   4. a resolved send lies inside what the peer read, when it read to EOF
//      (and after a peer reset, a zero-copy send whose pages the kernel held rejects);
//   5. no fd leaked, stats.unsent and outstandingIds are 0 after close, no uncaught
//      exception or unhandled rejection.
//
// Environment:
//   ZEROCOPY_MODEL_SEED       fast-check seed (default 20261123; 'random' for a new one; always printed)
//   ZEROCOPY_MODEL_PATH       fast-check replay path printed with a failure (with its seed)
//   ZEROCOPY_MODEL_CMDS       the commands' replayPath printed with it (shrunk command lists need it)
//   ZEROCOPY_MODEL_RUNS       sequences to run over TCP (default 40; `npm run test:model-long`: 2000)
//   ZEROCOPY_MODEL_TLS_RUNS   sequences to run over TLS (default 15; `npm run test:model-long`: 500)
//   ZEROCOPY_MODEL_H2_RUNS    sequences to run over an HTTP/2 stream (default 10; test:model-long: 500)
//   ZEROCOPY_MODEL_LINK       'tcp', 'tls' or 'h2': run only that test (a replay names it)
//   ZEROCOPY_MODEL_SHRINK_MS  time allowed to shrink a failure (default 30000; 0 = no shrinking)
//   ZEROCOPY_MODEL_ONLY       comma-separated command kinds to draw from (default all; the names
//                             are the keys of KINDS in test/model/commands.ts), to isolate a failure
//   ZEROCOPY_MODEL_VERBOSE    =1 prints every sequence's commands and outcomes, passing or not
import * as fs from 'node:fs'
import { after, before, test } from 'node:test'
import fc from 'fast-check'
import { sendFileZeroCopy, ZeroCopySocket } from '../lib'
import { openFdTargets } from './helpers'
import { command, type Model } from './model/commands'
import { Harness, sequenceDir, sleep, waitUntil } from './model/harness'
import { LINK_KINDS, makeLink, type LinkKind } from './model/link'
import { checkSequence, finishSequence, report, type EndKind } from './model/verify'

const RUNS: Record<LinkKind, number> = {
  tcp: Number(process.env.ZEROCOPY_MODEL_RUNS ?? 40),
  tls: Number(process.env.ZEROCOPY_MODEL_TLS_RUNS ?? 15),
  h2: Number(process.env.ZEROCOPY_MODEL_H2_RUNS ?? 10),
}
const LINK = process.env.ZEROCOPY_MODEL_LINK
// npm test runs one fixed seed (the same sequences every time); 'random' draws a new one.
const seedEnv = process.env.ZEROCOPY_MODEL_SEED ?? '20261123'
const SEED = seedEnv === 'random' ? Date.now() ^ (Math.random() * 0x7fffffff) : Number(seedEnv)
const PATH = process.env.ZEROCOPY_MODEL_PATH
const CMDS = process.env.ZEROCOPY_MODEL_CMDS
const SHRINK_MS = Number(process.env.ZEROCOPY_MODEL_SHRINK_MS ?? 30_000)
/** No sequence may take longer: every wait inside is bounded far below this. */
const SEQUENCE_MS = 120_000
const MAX_COMMANDS = 25
const ONLY = process.env.ZEROCOPY_MODEL_ONLY?.split(',').map((k) => k.trim()).filter((k) => k !== '')

const uncaught: string[] = []
process.on('uncaughtException', (err) => uncaught.push(`uncaught exception: ${err?.stack ?? err}`))
process.on('unhandledRejection', (err) => uncaught.push(`unhandled rejection: ${(err as Error)?.stack ?? err}`))

before(async () => {
  // Process-wide things made once (the reactor's epoll fd, the thread pool, TLS's
  // contexts) exist before the first sequence counts its fds.
  const dir = sequenceDir()
  fs.writeFileSync(`${dir}/w`, 'warm-up')
  for (const kind of LINK_KINDS) {
    const pair = await makeLink(kind)
    pair.server.resume()
    const zc = ZeroCopySocket.from(pair.client)
    await zc.send(Buffer.from('warm-up'))
    await sendFileZeroCopy(pair.client, `${dir}/w`)
    await zc.close()
    await pair.close()
  }
  fs.rmSync(dir, { recursive: true, force: true })
})

// A library bug can leave a socket "busy" forever, and the reactor then keeps the
// process alive: once the tests are done, do not wait for it.
after(() => {
  setTimeout(() => process.exit(), 3000).unref()
})

async function checkFds(h: Harness, before: Map<string, string>): Promise<void> {
  const leaked = () => [...openFdTargets()].filter(([fd, target]) => before.get(fd) !== target)
  if (await waitUntil(() => leaked().length === 0, 2000)) return
  h.violate(`fds left open after the sequence: ${leaked().map(([fd, t]) => `${fd} -> ${t}`).join(', ')}`, 'fds')
}

async function runSequence(link: LinkKind, cmds: Iterable<fc.AsyncCommand<Model, Harness>>, kind: EndKind, copiedThreshold: number): Promise<void> {
  const fdsBefore = openFdTargets()
  const uncaughtBefore = uncaught.length
  const dir = sequenceDir()
  const pair = await makeLink(link)
  const h = new Harness(pair, { copiedThreshold }, dir)
  // Calls that name the socket by fd keep order with Node's own writes once the Node
  // socket has been attached by its object (README, "Naming a socket by fd"): an fd
  // alone cannot say which Node socket writes to it. Done once here, then let go.
  await ZeroCopySocket.from(pair.client).close()
  try {
    await fc.asyncModelRun(() => ({ model: { corked: 0, paused: false, reset: false }, real: h }), cmds)
    checkSequence(h, await finishSequence(h, kind))
  } finally {
    await pair.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  await checkFds(h, fdsBefore)
  for (const e of uncaught.slice(uncaughtBefore)) h.violate(e, 'process')
  if (process.env.ZEROCOPY_MODEL_VERBOSE) console.log(report(h))
  if (h.violations.length > 0) throw new Error(report(h))
}

function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the sequence took more than ${ms} ms (a wait that should be bounded is not)`)), ms)
  })
  return Promise.race([p, limit]).finally(() => clearTimeout(timer))
}

const TITLES: Record<LinkKind, string> = {
  tcp: 'random command sequences on a loopback TCP pair keep the send contract',
  tls: 'random command sequences on a TLS connection (the honest copy path) keep the send contract',
  h2: 'random command sequences on an HTTP/2 stream (copies framed by the session) keep the send contract',
}

for (const link of LINK_KINDS) {
  test(TITLES[link], { skip: LINK !== undefined && LINK !== link }, (t) => checkSequences(t, link))
}

async function checkSequences(t: { diagnostic(s: string): void }, link: LinkKind): Promise<void> {
  const runs = RUNS[link]
  t.diagnostic(`seed ${SEED}, ${runs} sequences of up to ${MAX_COMMANDS} commands${ONLY ? ` (only ${ONLY.join(', ')})` : ''}`)
  let firstFailure: number | undefined
  const property = fc.asyncProperty(
    fc.commands([command(ONLY, link)], { maxCommands: MAX_COMMANDS, size: 'medium', replayPath: CMDS }),
    fc.constantFrom<EndKind>('end', 'destroy'),
    fc.constantFrom(Infinity, 32, 2),
    async (cmds, kind, threshold) => {
      // Past the shrinking budget every candidate "passes": the smallest failure so far stands.
      if (firstFailure !== undefined && performance.now() - firstFailure > SHRINK_MS) return
      try {
        await bounded(runSequence(link, cmds, kind, threshold), SEQUENCE_MS)
      } catch (err) {
        firstFailure ??= performance.now()
        throw err
      }
    },
  )
  const details = await fc.check(property, { seed: SEED, path: PATH, numRuns: runs, endOnFailure: SHRINK_MS <= 0 })
  if (!details.failed) return
  process.exitCode = 1
  await sleep(0)
  const example = fc.stringify(details.counterexample)
  const replayPath = /replayPath="([^"]*)"/.exec(example)?.[1]
  throw new Error(
    [
      `model sequence over ${link} failed (seed ${details.seed}, path ${details.counterexamplePath}, after ${details.numRuns} runs, shrunk ${details.numShrinks} times)`,
      `replay: ZEROCOPY_MODEL_LINK=${link} ZEROCOPY_MODEL_SEED=${details.seed} ZEROCOPY_MODEL_PATH='${details.counterexamplePath}'` +
        `${replayPath === undefined ? '' : ` ZEROCOPY_MODEL_CMDS='${replayPath}'`}${ONLY ? ` ZEROCOPY_MODEL_ONLY=${ONLY.join(',')}` : ''}` +
        ` ZEROCOPY_MODEL_SHRINK_MS=0 node --test dist/test/model-sequences.test.js`,
      `counterexample: ${example}`,
      String((details.errorInstance as Error)?.message ?? details.errorInstance),
    ].join('\n'),
  )
}
