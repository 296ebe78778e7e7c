// `npm run bench`: runs every bench/*.bench.ts, prints one table and writes the same
// rows as JSON (bench/results/latest.json). A new benchmark is a new *.bench.ts file
// exporting `run(ctx): Promise<Row[]>`; it needs no harness of its own.
// Each benchmark runs --rounds times, all its variants once per round, so that drift
// on the machine hits every variant alike; the table shows each variant's median round.
//   node dist/bench/run.js [--seconds S] [--rounds N] [--only substring]
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { cpuPerGB, gbps, repoRoot, type BenchContext, type Row } from './harness'

interface BenchModule {
  run(ctx: BenchContext): Promise<Row[]>
}

interface Args {
  seconds: number
  rounds: number
  only?: string
}

function parseArgs(argv: string[]): Args {
  const args: Args = { seconds: 1, rounds: 3 }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--seconds') args.seconds = Number(argv[++i])
    else if (argv[i] === '--rounds') args.rounds = Number(argv[++i])
    else if (argv[i] === '--only') args.only = argv[++i]!
    else throw new Error(`unknown argument ${argv[i]}; use --seconds S, --rounds N, --only NAME`)
  }
  if (!(args.seconds > 0 && args.seconds <= 60)) throw new Error('--seconds must be in (0, 60]')
  if (!(Number.isInteger(args.rounds) && args.rounds >= 1 && args.rounds <= 15)) throw new Error('--rounds must be 1..15')
  return args
}

/** Per (bench, group, variant): the round with the median throughput. */
function medianRows(rounds: Row[][]): Row[] {
  return rounds[0]!.map((first) => {
    const same = rounds
      .map((round) => round.find((r) => sameVariant(r, first)))
      .filter((r): r is Row => r !== undefined)
      .sort((a, b) => gbps(a) - gbps(b))
    return same[Math.floor(same.length / 2)]!
  })
}

function sameVariant(a: Row, b: Row): boolean {
  return a.bench === b.bench && a.group === b.group && a.variant === b.variant
}

/** A row's ratios to its baselines, one per round, each within its own round. */
interface Paired {
  vsStock: number[]
  vsC: number[]
}

/** Throughput of `row` over its stock-Node baseline and over its fastest C twin. */
function ratiosIn(row: Row, peers: Row[]): { vsStock?: number; vsC?: number } {
  const stock = peers.find((x) => x.role === 'stock-node')
  const twinNames = row.cTwin === undefined ? [] : [row.cTwin].flat()
  const twin = peers.filter((x) => twinNames.includes(x.variant)).sort((a, b) => gbps(b) - gbps(a))[0]
  return {
    ...(stock && row.role !== 'stock-node' ? { vsStock: gbps(row) / gbps(stock) } : {}),
    ...(twin && row.role !== 'c' ? { vsC: gbps(row) / gbps(twin) } : {}),
  }
}

/**
 * Ratios paired by round: the machine drifts (here by +-20% between runs), and a
 * variant compared with its baseline from the same round cancels most of that.
 */
function pairedRatios(rounds: Row[][], row: Row): Paired {
  const out: Paired = { vsStock: [], vsC: [] }
  for (const round of rounds) {
    const mine = round.find((r) => sameVariant(r, row))
    if (mine === undefined) continue
    const r = ratiosIn(mine, round.filter((x) => x.bench === row.bench && x.group === row.group))
    if (r.vsStock !== undefined) out.vsStock.push(r.vsStock)
    if (r.vsC !== undefined) out.vsC.push(r.vsC)
  }
  return out
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** "0.93x", and over several rounds the median with the range: "0.93x (0.85-1.02)". */
function ratioCell(xs: number[]): string {
  if (xs.length === 0) return ''
  const m = `${median(xs).toFixed(2)}x`
  return xs.length === 1 ? m : `${m} (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`
}

/** One line per row; ratios compare throughput within the row's group and round. */
export function formatTable(rows: Array<Row & { paired: Paired }>): string {
  const header = ['benchmark', 'group', 'variant', 'GB/s', 'CPU s/GB', 'CPU us/call', 'vs stock Node', 'vs same loop in C']
  const lines: string[][] = [header]
  for (const r of rows) {
    lines.push([
      r.bench,
      r.group,
      r.variant,
      gbps(r).toFixed(2),
      cpuPerGB(r).toFixed(3),
      r.calls > 0 ? ((r.cpuSeconds / r.calls) * 1e6).toFixed(2) : '',
      r.role === 'stock-node' ? 'baseline' : ratioCell(r.paired.vsStock),
      r.role === 'c' ? 'baseline' : ratioCell(r.paired.vsC),
    ])
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)))
  return lines.map((l) => l.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const files = fs
    .readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.js') && (args.only === undefined || f.includes(args.only)))
    .sort()
  const rows: Array<Row & { paired: Paired }> = []
  for (const file of files) {
    const mod = (await import(path.join(__dirname, file))) as BenchModule
    const rounds: Row[][] = []
    for (let round = 1; round <= args.rounds; round++) {
      process.stderr.write(`${file}: round ${round}/${args.rounds}, ${args.seconds} s per variant\n`)
      rounds.push(await mod.run({ seconds: args.seconds, round: round - 1 }))
    }
    rows.push(...medianRows(rounds).map((row) => ({ ...row, paired: pairedRatios(rounds, row) })))
  }
  console.log(formatTable(rows))
  if (args.rounds > 1) {
    console.log(`\nRatios: the median over ${args.rounds} rounds of each round's own ratio (lowest-highest), to the fastest C loop named for the row.`)
  }
  const out = path.join(repoRoot, 'bench', 'results', 'latest.json')
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, kernel: os.release(), node: process.version }
  const withRates = rows.map((r) => ({ ...r, gbps: gbps(r), cpuSecondsPerGB: cpuPerGB(r) }))
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), machine, args, rows: withRates }, null, 2) + '\n')
  console.log(`\nwrote ${path.relative(process.cwd(), out)}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
