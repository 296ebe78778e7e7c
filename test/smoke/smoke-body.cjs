// The checks both smoke tests run: real pipes, a real file and a loopback socket.
'use strict'
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

module.exports = async function smoke(zc, assert, flavour) {
  // vmsplice into a pipe, read back.
  const p = zc.pipe()
  assert.equal(zc.vmsplice(p.writeFd, Buffer.from('hello ')), 6)
  // splice a file into the same pipe.
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'zerocopy-smoke-')), 'f')
  fs.writeFileSync(file, 'world')
  const fd = fs.openSync(file, 'r')
  assert.equal(zc.splice(fd, 0, p.writeFd, null, 5), 5)
  const out = Buffer.alloc(11)
  assert.equal(fs.readSync(p.readFd, out), 11)
  assert.equal(out.toString(), 'hello world')
  for (const f of [fd, p.readFd, p.writeFd]) fs.closeSync(f)
  fs.rmSync(path.dirname(file), { recursive: true })

  // A zero-copy send on loopback, resolved by the kernel's completion.
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise((resolve) => server.once('connection', resolve))
  const client = net.connect(server.address().port, '127.0.0.1')
  await new Promise((resolve) => client.once('connect', resolve))
  const peer = await accepted
  server.close()
  const chunks = []
  peer.on('data', (c) => chunks.push(c))
  const ended = new Promise((resolve) => peer.once('end', resolve))
  const r = await zc.sendZeroCopy(client, Buffer.alloc(100000, 7))
  assert.equal(r.bytes, 100000)
  assert.ok(['msg_zerocopy', 'io_uring'].includes(r.mechanism), r.mechanism)
  client.end()
  await ended
  assert.equal(Buffer.concat(chunks).length, 100000)
  peer.destroy()

  // A batch of datagrams, read back in one recvmmsg.
  const dgram = require('node:dgram')
  const rx = dgram.createSocket('udp4')
  await new Promise((resolve) => rx.bind(0, '127.0.0.1', resolve))
  const tx = dgram.createSocket('udp4')
  await new Promise((resolve) => tx.connect(rx.address().port, '127.0.0.1', resolve))
  let seen = 0
  rx.on('message', () => seen++) // Node may read some first: count both ways
  const batch = await zc.ZeroCopySocket.from(tx).sendEach([Buffer.from('a'), Buffer.from('bc'), Buffer.from('def')])
  assert.equal(batch.calls, 3)
  const lengths = new Uint32Array(8)
  const deadline = Date.now() + 2000
  while (seen < 3 && Date.now() < deadline) {
    seen += zc.receiveDatagrams(rx, [Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0)], lengths)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  assert.equal(seen, 3)
  tx.close()
  rx.close()
  console.log(`smoke (${flavour}): splice, vmsplice, sendZeroCopy, sendEach and receiveDatagrams work from ${require.resolve('zerocopy')}`)
}
