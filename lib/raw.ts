// The raw syscalls, one to one with the kernel: byte counts in, byte counts out.
// Argument checking lives in the native layer (native/args.cc) so that no caller,
// typed or not, can hand the kernel a bad pointer or length.
import { native, type ByteView, type Length, type Offset } from './native'
import { invalidArgType } from './errors'
import { integerOption } from './validate'

export type { ByteView, Length, Offset }
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- referenced by TSDoc links below
import type { ZeroCopySocket } from './zerocopy-socket'

/**
 * Flags and option values from the system headers.
 *
 * - `SPLICE_F_*`: flags for {@link splice}, {@link tee} and {@link vmsplice}.
 * - `MSG_ZEROCOPY`, `SO_ZEROCOPY`, `MSG_ERRQUEUE`, `SO_EE_*`: the MSG_ZEROCOPY interface.
 * - `MSG_DONTWAIT`, `MSG_TRUNC`, `MSG_PEEK`, `MSG_WAITALL`: flags for {@link recv}.
 * - `SOL_SOCKET`, `IPPROTO_*`, `SO_*`, `UDP_CORK`, `TCP_CORK`: levels and names for
 *   {@link setSocketOption} and {@link getSocketOption}.
 */
export const constants = native.constants

/** Both ends of a pipe. The caller owns them and closes them (e.g. `fs.closeSync`). */
export interface PipeEnds {
  /** The read end. */
  readFd: number
  /** The write end. */
  writeFd: number
}

/** Options for {@link pipe}. */
export interface PipeOptions {
  /** Open both ends with O_NONBLOCK. Default `false`. */
  nonBlocking?: boolean
  /** Open both ends with O_CLOEXEC, so child processes do not inherit them. Default `true`. */
  closeOnExec?: boolean
}

/**
 * Moves up to `length` bytes between two fds, at least one of which is a pipe, without
 * copying them through user space (`splice(2)`).
 *
 * @param fdIn - The source fd.
 * @param offIn - Where to read in `fdIn`; `null` reads at (and advances) its file position.
 *   Must be `null` when `fdIn` is a pipe.
 * @param fdOut - The destination fd.
 * @param offOut - Where to write in `fdOut`; `null` uses its file position.
 * @param length - The most bytes to move.
 * @param flags - `constants.SPLICE_F_*` bits. Default 0.
 * @returns The bytes moved: 0 at end of input; may be less than `length`.
 * @throws SystemError (`code` 'EAGAIN', 'EINVAL', 'ESPIPE', 'EBADF', ...), TypeError, RangeError.
 * Blocks the calling thread on a blocking fd: use {@link spliceAsync} on the event loop.
 */
export function splice(fdIn: number, offIn: Offset, fdOut: number, offOut: Offset, length: Length, flags?: number): number {
  return native.splice(fdIn, offIn, fdOut, offOut, length, flags)
}

/**
 * {@link splice} on libuv's thread pool: the event loop keeps running while the call
 * waits for a slow disk or pipe. Argument errors reject the Promise.
 *
 * The call works on duplicates of the fds, so closing an fd while it runs neither
 * cancels it nor redirects it to a reused fd number. A call that can block forever
 * (an empty pipe whose writer never writes) holds a pool thread until it returns.
 */
export async function spliceAsync(
  fdIn: number,
  offIn: Offset,
  fdOut: number,
  offOut: Offset,
  length: Length,
  flags?: number,
): Promise<number> {
  return native.spliceAsync(fdIn, offIn, fdOut, offOut, length, flags)
}

/**
 * Duplicates up to `length` bytes from one pipe into another without consuming them
 * (`tee(2)`): the source pipe still holds the data afterwards.
 *
 * @returns The bytes duplicated; 0 when the source pipe is empty and has no writers.
 */
export function tee(fdIn: number, fdOut: number, length: Length, flags?: number): number {
  return native.tee(fdIn, fdOut, length, flags)
}

/** {@link tee} on libuv's thread pool (see {@link spliceAsync}). */
export async function teeAsync(fdIn: number, fdOut: number, length: Length, flags?: number): Promise<number> {
  return native.teeAsync(fdIn, fdOut, length, flags)
}

/**
 * Maps the bytes of `data` into a pipe (`vmsplice(2)`). Each view (Buffer,
 * TypedArray, DataView, ArrayBuffer) becomes one iovec covering exactly its bytes; an
 * array of views (at most `constants.IOV_MAX`) is sent in order.
 *
 * The pipe references the caller's pages until they are read out of it: writing to
 * `data` before then changes what the reader gets. `inputQueueBytes(readFd)` tells
 * how many bytes are still in the pipe.
 *
 * On a pipe opened non-blocking (`pipe({ nonBlocking: true })`) a full pipe gives
 * `EAGAIN`, as with splice and tee: the kernel's vmsplice only honours
 * `SPLICE_F_NONBLOCK`, so this binding adds that flag for O_NONBLOCK pipes.
 *
 * There is no async version: off-thread the kernel could read memory that JS has
 * since freed. Use a non-blocking pipe (or `SPLICE_F_NONBLOCK`) on the event loop.
 *
 * @returns The bytes mapped; may be less than the total on a non-blocking pipe.
 */
export function vmsplice(pipeFd: number, data: ByteView | readonly ByteView[], flags?: number): number {
  return native.vmsplice(pipeFd, data, flags)
}

/**
 * Copies up to `count` bytes from `inFd` (a file that can be mmapped) to `outFd`
 * (`sendfile(2)`) inside the kernel.
 *
 * @param offset - Where to read in `inFd`: a number or bigint leaves the file position
 *   untouched; `null` reads at and advances it.
 * @returns The bytes sent; 0 at end of file.
 *
 * The kernel gives no notice of when it is done with the file's pages: changing the
 * file after this returns can still change what the peer receives.
 */
export function sendfile(outFd: number, inFd: number, offset: Offset, count: Length): number {
  return native.sendfile(outFd, inFd, offset, count)
}

/** {@link sendfile} on libuv's thread pool (see {@link spliceAsync}). */
export async function sendfileAsync(outFd: number, inFd: number, offset: Offset, count: Length): Promise<number> {
  return native.sendfileAsync(outFd, inFd, offset, count)
}

/** Creates a pipe (`pipe2(2)`), close-on-exec unless asked otherwise. */
export function pipe(options?: PipeOptions): PipeEnds {
  return native.pipe(options)
}

/** The capacity of a pipe in bytes (`F_GETPIPE_SZ`). */
export function getPipeSize(fd: number): number {
  return native.getPipeSize(fd)
}

/**
 * Sets a pipe's capacity (`F_SETPIPE_SZ`) and returns the capacity the kernel chose
 * (rounded up to a power-of-two number of pages). Without CAP_SYS_RESOURCE the limit
 * is `/proc/sys/fs/pipe-max-size` (1 MiB by default): beyond it, `EPERM`.
 */
export function setPipeSize(fd: number, size: number): number {
  return native.setPipeSize(fd, size)
}

/** Bytes waiting to be read from a pipe or socket (`FIONREAD`). */
export function inputQueueBytes(fd: number): number {
  return native.inputQueueBytes(fd)
}

/**
 * Bytes in a socket's send queue (`SIOCOUTQ`): for TCP, those sent but not yet
 * acknowledged plus those not yet sent.
 */
export function outputQueueBytes(fd: number): number {
  return native.outputQueueBytes(fd)
}

/**
 * Sends the bytes of `data` on a socket (`sendmsg(2)`, one iovec per view) with any
 * `MSG_*` flags, e.g. `constants.MSG_ZEROCOPY` after {@link setZeroCopy}. The raw
 * call: with MSG_ZEROCOPY the caller must keep `data` unchanged until the kernel's
 * completion arrives ({@link readErrorQueue}); {@link ZeroCopySocket} does that for you.
 *
 * @returns The bytes sent (a stream socket may take fewer than offered).
 */
export function send(fd: number, data: ByteView | readonly ByteView[], flags?: number): number {
  return native.send(fd, data, flags)
}

/**
 * Receives from a socket (`recvmsg(2)`) with any `MSG_*` flags: into the views of
 * `buffer` (one iovec each, filled in order), or, with `buffer` `null`, into no memory
 * at all, which with `constants.MSG_TRUNC` is how a receiver discards without copying:
 *
 * - TCP: `recv(fd, null, MSG_TRUNC | MSG_DONTWAIT, 1 << 21)` drops up to 2 MiB of the
 *   queued bytes and returns how many it dropped.
 * - UDP: `recv(fd, header, MSG_TRUNC | MSG_DONTWAIT)` copies the first
 *   `header.length` bytes of the next datagram and returns its full length;
 *   `recv(fd, null, MSG_TRUNC)` drops it whole.
 *
 * `length` (default 0) is the size of the `null` buffer and is refused with a real one.
 * Without MSG_TRUNC a `null` buffer with a length fails with `EFAULT`: the kernel never
 * writes to it. Blocks the calling thread on a blocking socket: pass
 * `constants.MSG_DONTWAIT` on the event loop.
 *
 * @returns The bytes received (0 at end of stream, or for an empty datagram); with
 *   MSG_TRUNC, the bytes dropped (TCP) or the datagram's full length (UDP).
 * @throws SystemError (`code` 'EAGAIN' when nothing is queued and the call must not
 *   wait, 'ENOTSOCK', 'EBADF', ...), TypeError, RangeError.
 */
export function recv(fd: number, buffer: ByteView | readonly ByteView[] | null, flags?: number, length?: Length): number {
  return native.recv(fd, buffer, flags, length)
}

/**
 * Duplicates an fd (`fcntl(F_DUPFD_CLOEXEC)`): the new fd names the same open file,
 * which stays open (a socket: connected) until every fd of it is closed. The caller
 * owns the new fd. With it a socket can outlive the Node object that accepted it, e.g.
 * to be read through a `net.Socket({ fd, onread })` of one's own.
 */
export function dup(fd: number): number {
  return native.dupFd(fd, false)
}

/** Enables or disables `SO_ZEROCOPY` on a socket (`ENOTSUP` for AF_UNIX and others). */
export function setZeroCopy(fd: number, on: boolean): void {
  native.setZeroCopy(fd, on)
}

/**
 * Sets a socket option whose value is an `int` (`setsockopt(2)`), which most are:
 * `constants.UDP_CORK` at `constants.IPPROTO_UDP` (hold a socket's sends back as one
 * datagram until set to 0 again), `TCP_CORK`, `SO_SNDBUF`, `SO_RCVBUF`, `SO_RCVLOWAT`,
 * `SO_REUSEPORT` at `SOL_SOCKET`, and any other level/name from the system headers.
 * Only an int reaches the kernel: an option that takes a larger struct fails with EINVAL.
 *
 * @param level - `constants.SOL_SOCKET`, `IPPROTO_UDP`, `IPPROTO_TCP`, ...: an integer >= 0.
 * @param name - The option at that level: an integer >= 0.
 * @param value - An integer in [-2^31, 2^31 - 1].
 * @throws SystemError (`syscall` 'setsockopt'; `code` 'ENOPROTOOPT' for an option the
 *   socket does not have, 'ENOTSOCK', 'EBADF', 'EINVAL', ...), TypeError, RangeError.
 */
export function setSocketOption(fd: number, level: number, name: number, value: number): void {
  native.setSocketOption(fd, level, name, value)
}

/**
 * Reads a socket option as an `int` (`getsockopt(2)`): `getSocketOption(fd,
 * constants.SOL_SOCKET, constants.SO_SNDBUF)` is the send buffer the kernel gave (twice
 * what was asked for, for its bookkeeping, and capped by `net.core.wmem_max`).
 *
 * @throws SystemError (`syscall` 'getsockopt'), TypeError, RangeError.
 */
export function getSocketOption(fd: number, level: number, name: number): number {
  return native.getSocketOption(fd, level, name)
}

/** One entry of a socket's error queue (`struct sock_extended_err`). */
export interface ErrorQueueEntry {
  /** `ee_origin`: `constants.SO_EE_ORIGIN_ZEROCOPY` (5) for MSG_ZEROCOPY completions. */
  origin: number
  /** `ee_code`: for completions, bit `SO_EE_CODE_ZEROCOPY_COPIED` says the kernel copied. */
  code: number
  /** `ee_errno`: 0 for completions. */
  errno: number
  /** `ee_info`: for completions, the first completed send id. */
  info: number
  /** `ee_data`: for completions, the last completed send id (inclusive; ids wrap at 2^32). */
  data: number
}

/**
 * Reads up to `max` entries from a socket's error queue (`recvmsg(MSG_ERRQUEUE)`)
 * without blocking; an empty queue gives an empty array.
 */
export function readErrorQueue(fd: number, max = 64): ErrorQueueEntry[] {
  if (typeof fd !== 'number') throw invalidArgType('fd', 'of type number', fd) // arguments in order
  const words = new Uint32Array(4 * integerOption('max', max, 64, 1, 4096))
  const n = native.readErrorQueue(fd, words)
  if (n < 0) throw native.systemError(-n, 'recvmsg')
  const out: ErrorQueueEntry[] = []
  for (let i = 0; i < n; i++) {
    out.push({
      origin: words[4 * i]! & 0xff,
      code: words[4 * i]! >>> 8,
      errno: words[4 * i + 1]!,
      info: words[4 * i + 2]!,
      data: words[4 * i + 3]!,
    })
  }
  return out
}
