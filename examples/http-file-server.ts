// An HTTP(S) server that sends files with sendFileZeroCopy(res, file): the call waits
// for the response's turn on its connection (pipelined requests), sends the headers
// with Content-Length, the body from read-only file mappings with MSG_ZEROCOPY (through
// the TLS socket as copies under HTTPS, where a write to the fd would leak plaintext),
// and ends the response; its Promise resolves once the kernel (or TLS) released the
// file's pages, so the file may change after that without corrupting a response.
//   node dist/examples/http-file-server.js <directory> [port] [--cert cert.pem --key key.pem]
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'
import * as path from 'node:path'
import { sendFileZeroCopy } from '../lib'

/** A request handler serving the files below `root` (GET and HEAD only). */
export function fileHandler(root: string): http.RequestListener {
  const base = path.resolve(root)
  return (req, res) => {
    void (async () => {
      const file = path.join(base, path.normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)))
      if (!file.startsWith(base + path.sep)) return respond(res, 403, 'forbidden')
      if (req.method !== 'GET' && req.method !== 'HEAD') return respond(res, 405, 'method not allowed')
      const stat = await fs.promises.stat(file).catch(() => undefined)
      if (!stat?.isFile()) return respond(res, 404, 'not found')
      res.setHeader('content-type', 'application/octet-stream')
      try {
        // Headers (Content-Length from the file), body, end; a HEAD gets the headers only.
        await sendFileZeroCopy(res, file)
      } catch (err) {
        // The body could not be sent whole: the response was destroyed, never reused.
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
  const args = process.argv.slice(2)
  const flag = (name: string) => {
    const i = args.indexOf(name)
    return i < 0 ? undefined : args.splice(i, 2)[1]
  }
  const certFile = flag('--cert')
  const keyFile = flag('--key')
  const [root, port] = args
  if (!root || (certFile === undefined) !== (keyFile === undefined)) {
    console.error('usage: node dist/examples/http-file-server.js <directory> [port] [--cert cert.pem --key key.pem]')
    process.exit(2)
  }
  const handler = fileHandler(root)
  const server =
    certFile !== undefined ? https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile!) }, handler) : http.createServer(handler)
  server.listen(Number(port ?? 8080), '127.0.0.1', () => {
    const scheme = certFile !== undefined ? 'https' : 'http'
    console.log(`serving ${path.resolve(root)} on ${scheme}://127.0.0.1:${(server.address() as { port: number }).port}/`)
  })
}
