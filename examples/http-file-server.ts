// An HTTP server that sends files with sendFileZeroCopy: Node writes the headers, the
// body goes from read-only file mappings with MSG_ZEROCOPY, and each response's Promise
// resolves once the kernel released the file's pages (the file may change after that
// without corrupting a response in flight).
//   node dist/examples/http-file-server.js <directory> [port]
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { sendFileZeroCopy } from '../lib'

/** A request handler serving the files below `root` (GET and HEAD only). */
export function fileHandler(root: string): http.RequestListener {
  const base = path.resolve(root)
  return (req, res) => {
    void (async () => {
      const file = path.join(base, path.normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)))
      if (!file.startsWith(base + path.sep)) return respond(res, 403, 'forbidden')
      let stat: fs.Stats
      try {
        stat = await fs.promises.stat(file)
      } catch {
        return respond(res, 404, 'not found')
      }
      if (!stat.isFile()) return respond(res, 404, 'not found')
      if (req.method !== 'GET' && req.method !== 'HEAD') return respond(res, 405, 'method not allowed')
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': stat.size })
      if (req.method === 'HEAD' || stat.size === 0) return res.end()
      res.flushHeaders() // the headers go out through Node first; the body queues behind them
      try {
        await sendFileZeroCopy(res.socket!, file, { length: stat.size })
        res.end()
      } catch (err) {
        // The body could not be sent whole: the connection is closed, never reused.
        res.destroy()
        console.error(`http-file-server: ${req.url}: ${(err as Error).message}`)
      }
    })()
  }
}

function respond(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

if (require.main === module) {
  const [root, port] = process.argv.slice(2)
  if (!root) {
    console.error('usage: node dist/examples/http-file-server.js <directory> [port]')
    process.exit(2)
  }
  const server = http.createServer(fileHandler(root))
  server.listen(Number(port ?? 8080), '127.0.0.1', () => {
    console.log(`serving ${path.resolve(root)} on http://127.0.0.1:${(server.address() as { port: number }).port}/`)
  })
}
