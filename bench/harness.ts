// What every benchmark shares: building the C baselines, measuring a loop, and one
// result row format that bench/run.ts prints as a table and writes as JSON.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

/** Where a row stands in its group: the package, the stock-Node baseline (one per group)
 * or another stock-Node way, or a C baseline. */
export type Role = 'zerocopy' | 'stock-node' | 'stock-node-variant' | 'c'

export interface Row {
  /** The benchmark (file) it belongs to, e.g. "vmsplice -> pipe". */
  bench: string
  /** Rows with the same group are compared with each other (e.g. one chunk size). */
  group: string
  /** What ran, e.g. "zerocopy.vmsplice" or "C write()". */
  variant: string
  role: Role
  /** For a zerocopy or stock-node row: the variant name of the same loop in C, or
   * several, of which the table compares with the fastest. */
  cTwin?: string | string[]
  bytes: number
  seconds: number
  /** CPU seconds of the sending process (user + system). */
  cpuSeconds: number
  calls: number
}

export interface Measured {
  bytes: number
  seconds: number
  cpuSeconds: number
  calls: number
}

/** A result row from a measurement; `cTwin` names the same loop(s) in C, if any. */
export function toRow(bench: string, group: string, variant: string, role: Role, m: Measured, cTwin?: string | string[]): Row {
  return {
    bench,
    group,
    variant,
    role,
    ...(cTwin ? { cTwin } : {}),
    bytes: m.bytes,
    seconds: m.seconds,
    cpuSeconds: m.cpuSeconds,
    calls: m.calls,
  }
}

/** Options every benchmark receives from bench/run.ts. */
export interface BenchContext {
  /** Seconds each variant runs. */
  seconds: number
  /** Which round this is (0, 1, ...): see {@link inRotation}. */
  round: number
}

/**
 * Runs every measurement once, starting at a different one each round (whatever runs
 * first or right after another may find the machine warmer or busier), and returns
 * the results in the order given.
 */
export function inRotation<T>(round: number, measurements: Array<() => T>): T[] {
  const out = new Array<T>(measurements.length)
  for (let k = 0; k < measurements.length; k++) {
    const i = (round + k) % measurements.length
    out[i] = measurements[i]!()
  }
  return out
}

export const repoRoot = path.join(__dirname, '..', '..')
const cDir = path.join(repoRoot, 'bench', 'c')
const binDir = path.join(cDir, 'bin')

/**
 * The command prefix that runs a process on one CPU (`taskset -c <cpu>`), or nothing
 * where that is not possible (one CPU, no taskset). The senders run on CPU 0 and the
 * receiver on CPU 1, so that every variant, Node or C, gets the same placement: left
 * to the scheduler, sender and receiver sometimes shared a CPU, and the same variant
 * moved by 2x between runs.
 */
export function onCpu(cpu: number): string[] {
  if (os.cpus().length < 2 || !fs.existsSync('/usr/bin/taskset')) return []
  return ['/usr/bin/taskset', '-c', String(cpu)]
}

/** Compiles bench/c/<name>.c (when its binary is missing or older) and returns its path. */
export function cBinary(name: string): string {
  const src = path.join(cDir, `${name}.c`)
  const bin = path.join(binDir, name)
  const newest = Math.max(fs.statSync(src).mtimeMs, fs.statSync(path.join(cDir, 'bench_common.h')).mtimeMs)
  if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < newest) {
    fs.mkdirSync(binDir, { recursive: true })
    execFileSync('cc', ['-O2', '-D_GNU_SOURCE', '-Wall', '-Wextra', '-o', bin, src], { stdio: 'inherit' })
  }
  return bin
}

/** Parses the one-line JSON result the C programs print. */
export function parseResult(text: string): Measured {
  const line = text.trim().split('\n').pop() ?? ''
  const r = JSON.parse(line) as Measured
  if (typeof r.bytes !== 'number' || typeof r.seconds !== 'number') throw new Error(`bad C result: ${text}`)
  return r
}

type StdioSlot = number | 'ignore' | 'pipe' | 'inherit'

/** Starts a process and collects its stdout/stderr; `done` resolves on a clean exit. */
export function start(
  file: string,
  args: string[],
  stdio: [StdioSlot, StdioSlot, StdioSlot],
): { child: ChildProcess; done: Promise<{ stdout: string; stderr: string }> } {
  const child = spawn(file, args, { stdio })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const done = new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => {
      if (code === 0) resolve({ stdout, stderr })
      else reject(new Error(`${path.basename(file)} ${args.join(' ')} exited ${code}: ${stderr}`))
    })
  })
  return { child, done }
}

/**
 * Runs `step` (which returns the bytes it moved) in a tight loop for `seconds` on this
 * thread and measures bytes, wall time and this process's CPU time.
 */
export function measureLoop(seconds: number, step: () => number): Measured {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  let bytes = 0
  let calls = 0
  while (performance.now() < end) {
    bytes += step()
    calls++
  }
  const elapsed = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  return { bytes, seconds: elapsed, cpuSeconds: (cpu.user + cpu.system) / 1e6, calls }
}

export function gbps(r: Measured): number {
  return r.bytes / r.seconds / 1e9
}

export function cpuPerGB(r: Measured): number {
  return r.bytes > 0 ? r.cpuSeconds / (r.bytes / 1e9) : NaN
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / 1024 / 1024} MiB`
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`
  return `${n} B`
}
