// vmsplice from Node into a pipe whose reader splices to /dev/null, against stock
// Node writing the same buffer into the same kind of pipe, and against the same two
// loops in C. The reader is the same C program (bench/c/splice_sink.c) every time.
import * as fs from 'node:fs'
import { allocPageAligned, pipe, setPipeSize, vmsplice } from '../lib'
import { cBinary, formatBytes, measureLoop, parseResult, start, toRow, type BenchContext, type Measured, type Row } from './harness'

const PIPE_SIZE = 1024 * 1024
const CHUNKS = [64 * 1024, 1024 * 1024]

/** A 1 MiB pipe whose read end belongs to a running splice sink. */
function pipeToSink(): { writeFd: number; sinkDone: Promise<unknown> } {
  const p = pipe()
  setPipeSize(p.writeFd, PIPE_SIZE)
  const sink = start(cBinary('splice_sink'), [], [p.readFd, 'pipe', 'inherit'])
  fs.closeSync(p.readFd)
  return { writeFd: p.writeFd, sinkDone: sink.done }
}

/** Runs a JS writer loop on `writeFd` until the time is up, then lets the sink finish. */
async function nodeWriter(seconds: number, write: (fd: number) => number): Promise<Measured> {
  const { writeFd, sinkDone } = pipeToSink()
  const result = measureLoop(seconds, () => write(writeFd))
  fs.closeSync(writeFd)
  await sinkDone
  return result
}

async function cWriter(mode: 'vmsplice' | 'write', chunk: number, seconds: number): Promise<Measured> {
  const { writeFd, sinkDone } = pipeToSink()
  const writer = start(cBinary('pipe_writer'), [mode, String(chunk), String(seconds)], ['ignore', writeFd, 'pipe'])
  fs.closeSync(writeFd)
  const { stderr } = await writer.done
  await sinkDone
  return parseResult(stderr)
}

export async function run(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = []
  for (const chunk of CHUNKS) {
    const buf = allocPageAligned(chunk).fill('z')
    const group = `${formatBytes(chunk)} chunks`
    const bench = 'vmsplice -> pipe -> splice to /dev/null'
    const add = (variant: string, role: Row['role'], m: Measured, cTwin?: string | string[]) =>
      rows.push(toRow(bench, group, variant, role, m, cTwin))

    // Each step writes one whole chunk, looping over partial transfers like C does.
    add('zerocopy.vmsplice()', 'zerocopy', await nodeWriter(ctx.seconds, (fd) => {
      let off = 0
      while (off < chunk) off += vmsplice(fd, off === 0 ? buf : buf.subarray(off))
      return chunk
    }), 'C vmsplice()')
    add('fs.writeSync()', 'stock-node', await nodeWriter(ctx.seconds, (fd) => {
      let off = 0
      while (off < chunk) off += fs.writeSync(fd, buf, off, chunk - off)
      return chunk
    }), 'C write()')
    add('C vmsplice()', 'c', await cWriter('vmsplice', chunk, ctx.seconds))
    add('C write()', 'c', await cWriter('write', chunk, ctx.seconds))
  }
  return rows
}
