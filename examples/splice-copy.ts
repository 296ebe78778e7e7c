// Copies a file through a pipe with splice(2): the bytes never enter user space.
// The file -> pipe step runs off the event loop (spliceAsync), so a slow disk does
// not stall other work; the pipe -> file step drains what the first step moved.
//   node dist/examples/splice-copy.js <source> <destination>
import * as fs from 'node:fs'
import { getPipeSize, pipe, setPipeSize, splice, spliceAsync } from '../lib'

async function spliceCopy(source: string, destination: string): Promise<number> {
  const src = fs.openSync(source, 'r')
  const dst = fs.openSync(destination, 'w')
  const { readFd, writeFd } = pipe()
  try {
    setPipeSize(writeFd, 1024 * 1024)
    const chunk = getPipeSize(writeFd)
    let offset = 0
    for (;;) {
      const moved = await spliceAsync(src, offset, writeFd, null, chunk)
      if (moved === 0) return offset
      offset += moved
      // The pipe now holds exactly `moved` bytes: write them all out.
      for (let left = moved; left > 0; ) left -= splice(readFd, null, dst, null, left)
    }
  } finally {
    for (const fd of [src, dst, readFd, writeFd]) fs.closeSync(fd)
  }
}

const [source, destination] = process.argv.slice(2)
if (!source || !destination) {
  console.error('usage: node dist/examples/splice-copy.js <source> <destination>')
  process.exit(2)
}
spliceCopy(source, destination).then(
  (bytes) => console.log(`copied ${bytes} bytes from ${source} to ${destination} with splice`),
  (err: NodeJS.ErrnoException) => {
    console.error(`splice-copy: ${err.message}`)
    process.exit(1)
  },
)
