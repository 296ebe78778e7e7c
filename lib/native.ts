// Loads the compiled addon: a prebuilt binary from prebuilds/ when one matches,
// otherwise build/Release (node-gyp-build decides). ZEROCOPY_NATIVE names another
// .node file instead; the AddressSanitizer test run uses it.
import * as path from 'node:path'

/** Byte views the kernel may read: one iovec each. */
export type ByteView = ArrayBufferView | ArrayBuffer

/** A file offset: `null` uses (and advances) the fd's own file position. */
export type Offset = number | bigint | null

/** A byte count; values past 2^53 need a bigint. */
export type Length = number | bigint

export interface NativeBinding {
  splice(fdIn: number, offIn: Offset, fdOut: number, offOut: Offset, length: Length, flags?: number): number
  spliceAsync(fdIn: number, offIn: Offset, fdOut: number, offOut: Offset, length: Length, flags?: number): Promise<number>
  tee(fdIn: number, fdOut: number, length: Length, flags?: number): number
  teeAsync(fdIn: number, fdOut: number, length: Length, flags?: number): Promise<number>
  vmsplice(pipeFd: number, data: ByteView | readonly ByteView[], flags?: number): number
  sendfile(outFd: number, inFd: number, offset: Offset, count: Length): number
  sendfileAsync(outFd: number, inFd: number, offset: Offset, count: Length): Promise<number>
  pipe(options?: { nonBlocking?: boolean; closeOnExec?: boolean }): { readFd: number; writeFd: number }
  getPipeSize(fd: number): number
  setPipeSize(fd: number, size: Length): number
  inputQueueBytes(fd: number): number
  outputQueueBytes(fd: number): number
  send(fd: number, data: ByteView | readonly ByteView[], flags?: number): number
  trySend(fd: number, data: ByteView | readonly ByteView[], flags?: number): number
  trySendEach(
    fd: number,
    messages: readonly ByteView[],
    first: number,
    firstOffset: number,
    flags: number,
    datagram: boolean,
    out: Float64Array,
  ): number
  recv(fd: number, buffer: ByteView | readonly ByteView[] | null, flags?: number, length?: Length): number
  receiveMany(fd: number, buffers: readonly ByteView[], lengths: Uint32Array): number
  setReceiveBuffer(fd: number, bytes: number): number
  readErrorQueue(fd: number, out: Uint32Array): number
  setZeroCopy(fd: number, on: boolean): void
  setSocketOption(fd: number, level: number, name: number, value: number): void
  getSocketOption(fd: number, level: number, name: number): number
  socketIdentity(fd: number): { domain: number; type: number; protocol: number; key: string; inode: number }
  /**
   * Claims sockets by their keys for this environment, process-wide (native/socket-claims.cc):
   * -1, or the index of the first key a relay or upload of any environment holds (nothing claimed).
   */
  claimSockets(keys: string[]): number
  /** Throws what relay start() would for this upload target (native/relay.cc): not a writable regular file, O_APPEND, a pseudo-file. */
  checkUploadFile(fd: number, name: string): void
  /** Ends this environment's claims on `keys`. */
  releaseSockets(keys: string[]): void
  tcpStreamOffset(fd: number): number
  tcpAckState(fd: number, out: Float64Array): number
  disconnect(fd: number): number
  dupFd(fd: number, isPrivate?: boolean, ours?: boolean): number
  closeFd(fd: number): void
  /** A private read-only fd of a file opened without blocking, or -errno (native/file-open.cc). */
  openCached(path: string): number
  /** Whether fstat of `fd` cannot wait for a server: a non-empty regular file on a local mount. */
  localRegularFile(fd: number): boolean
  /**
   * native/upload-open.cc: an upload's file opened (and checked by fstat) on a thread of
   * its own; `done(errno, fd, syscall, type)`, `type` the S_IFMT bits of a non-regular file.
   */
  openUploadFile(path: string, truncate: boolean, done: (errno: number, fd: number, syscall: string | undefined, type: number) => void): UploadCall
  /** native/upload-open.cc: close(fd) on a thread of its own; `done(errno)`. */
  closeUploadFile(fd: number, done: (errno: number) => void): UploadCall
  /** native/upload-open.cc: `done` is never called; the call ends on its own thread (a late fd closed there). */
  abandonUploadCall(call: UploadCall): void
  /** The package's private fds open now (native/private-fds.h); for tests. */
  privateFds(): number[]
  shutdownSocket(fd: number, how: 0 | 1 | 2): void
  abortiveClose(fd: number): void
  systemError(errno: number, syscall: string): NodeJS.ErrnoException
  /** native/uring-probe.cc: '' when the io_uring engine can run here, else why not. */
  uringProbe(): string
  Uring: new () => NativeUring
  Reactor: new (onEvents: (events: Uint32Array, count: number) => void) => NativeReactor
  Mapping: new (fd: number, offset: number | bigint, length: number) => NativeMapping
  RelayEngine: new (onDone: RelayDoneCallback) => NativeRelayEngine
  trySendMapped(fd: number, mapping: NativeMapping, offset: number, length: number, flags: number): number
  pageOffsetOf(view: ByteView): number
  pageSize: number
  constants: NativeConstants
  /**
   * native/env.cc: this environment closes `fd` if it stops (worker terminated) before
   * releaseFd(fd); abortively if bytes are queued and it sends zero-copy (`zeroCopy`
   * for io_uring sockets; SO_ZEROCOPY tells for the others).
   */
  adoptFd(fd: number, zeroCopy?: boolean): void
  releaseFd(fd: number): void
}

/** A running openUploadFile/closeUploadFile call, for abandonUploadCall. */
export interface UploadCall {
  readonly __uploadCall: unique symbol
}

/** native/reactor.cc: an epoll instance watched by libuv. */
export interface NativeReactor {
  add(fd: number, token: number, writable: boolean, readable?: boolean): void
  wantWritable(fd: number, token: number, writable: boolean): void
  remove(fd: number): void
  ref(): void
  unref(): void
  close(): void
}

/**
 * native/uring.cc: the environment's io_uring. Sends are synchronous (MSG_DONTWAIT
 * SEND_ZC, results collected before returning); out = [bytes, calls, SQEs used,
 * completions waiting for reap, calls from registered buffers]. user_data = token << 32 | seq.
 */
export interface NativeUring {
  readonly fd: number
  /** io_uring_enter calls that offered SQEs, since the ring was made. */
  readonly submits: number
  readonly eventFd: number
  send(token: number, seq: number, fd: number, data: ByteView | readonly ByteView[], flags: number, out: Float64Array): number
  sendEach(
    token: number,
    seq: number,
    fd: number,
    messages: readonly ByteView[],
    first: number,
    firstOffset: number,
    flags: number,
    datagram: boolean,
    out: Float64Array,
    /** Only prepare it (returns constants.URING_PREPARED): it is made at flush(). */
    defer?: boolean,
  ): number
  sendMapped(
    token: number,
    seq: number,
    fd: number,
    mapping: NativeMapping,
    offset: number,
    length: number,
    flags: number,
    out: Float64Array,
    chunk: number,
  ): number
  /** A zeroed ArrayBuffer whose pages are registered with the ring (native/uring-buffers.cc). */
  allocRegistered(size: number): ArrayBuffer
  /** Releases (notification CQEs) as 4 words each: token, first seq, last seq, copied 0/1. */
  reap(out: Uint32Array): number
  close(): void
  /** Makes every prepared call in one io_uring_enter; 6 words per deferred call concluded: token, r, bytes, calls, SQEs, registered. */
  flush(reports: Float64Array): number
}

/** native/relay.cc: how a relay job ended (failedEnd: 0 a, 1 b, -1 neither). */
export type RelayDoneCallback = (
  id: number,
  errno: number,
  syscall: string | undefined,
  movedAB: number,
  movedBA: number,
  premature: boolean,
  failedEnd: number,
) => void

/** native/relay.cc: the environment's relay thread. */
export interface NativeRelayEngine {
  /** Checks every argument, duplicates the fds and hands the job to the thread; returns the mechanism. */
  start(
    id: number,
    mechanism: 0 | 1 | 2,
    bufferSize: number,
    fdA: number,
    fdB: number,
    bIsFile: boolean,
    fileOffset: number | bigint | null,
    activeAB: boolean,
    lengthAB: number | bigint | null,
    shutdownAB: boolean,
    activeBA: boolean,
    lengthBA: number | bigint | null,
    shutdownBA: boolean,
    prefixAB: Buffer | null,
    prefixBA: Buffer | null,
    nameA: string,
    nameB: string,
  ): 'copy' | 'splice'
  /** Ends a job: undefined (its end is reported), or, for an upload abandoned at once, the bytes it had written. */
  cancel(id: number): number | undefined
  ref(): void
  unref(): void
  /** Bytes every job wrote so far. */
  moved(): number
  /** Bytes one running job wrote so far; -1 when it is not running. */
  progress(id: number): number
  /** Bytes of buffers and pipe capacity every job holds now. */
  held(): number
}

/** native/mapping.cc: a read-only MAP_SHARED file window that only the kernel reads. */
export interface NativeMapping {
  readonly length: number
  readonly mapped: boolean
  /** Faults [offset, offset + length) in on the thread pool; EFAULT past end of file. */
  populate(offset: number, length: number): Promise<void>
  /** True when every page of the range is in the page cache (mincore). */
  resident(offset: number, length: number): boolean
  /** Unmaps (deferred while a populate runs). Only once the kernel released the pages. */
  unmap(): void
}

export interface NativeConstants {
  readonly SPLICE_F_MOVE: number
  readonly SPLICE_F_NONBLOCK: number
  readonly SPLICE_F_MORE: number
  readonly SPLICE_F_GIFT: number
  readonly MSG_ZEROCOPY: number
  /** What a deferred io_uring send returns (native/uring-calls.h). */
  readonly URING_PREPARED: number
  readonly MSG_ERRQUEUE: number
  readonly MSG_DONTWAIT: number
  readonly MSG_TRUNC: number
  readonly MSG_PEEK: number
  readonly MSG_WAITALL: number
  readonly MSG_MORE: number
  readonly MSG_NOSIGNAL: number
  readonly SOL_SOCKET: number
  readonly SO_ZEROCOPY: number
  readonly SO_SNDBUF: number
  readonly SO_RCVBUF: number
  readonly SO_RCVLOWAT: number
  readonly SO_REUSEPORT: number
  readonly IPPROTO_IP: number
  readonly IPPROTO_IPV6: number
  readonly IPPROTO_TCP: number
  readonly IPPROTO_UDP: number
  readonly TCP_CORK: number
  readonly UDP_CORK: number
  readonly SO_EE_ORIGIN_ZEROCOPY: number
  readonly SO_EE_CODE_ZEROCOPY_COPIED: number
  readonly O_NONBLOCK: number
  readonly O_CLOEXEC: number
  readonly F_GETPIPE_SZ: number
  readonly F_SETPIPE_SZ: number
  readonly IOV_MAX: number
  readonly AF_INET: number
  readonly AF_INET6: number
  readonly AF_UNIX: number
  readonly SOCK_STREAM: number
  readonly SOCK_DGRAM: number
  readonly EPOLLIN: number
  readonly EPOLLOUT: number
  readonly EPOLLERR: number
  readonly EPOLLHUP: number
}

function load(): NativeBinding {
  if (process.platform !== 'linux') {
    throw new Error(
      `zerocopy supports Linux only (this is ${process.platform}-${process.arch}): ` +
        'splice, vmsplice, tee and MSG_ZEROCOPY are Linux syscalls. Mark the package optional to run elsewhere.',
    )
  }
  const override = process.env.ZEROCOPY_NATIVE
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a binary named at run time
  if (override) return require(path.resolve(override)) as NativeBinding
  return loadBuilt(path.join(__dirname, '..', '..'))
}

export const native: NativeBinding = load()

/**
 * The binary node-gyp-build picks (build/Release, else the prebuild for this platform
 * and libc), with an error that says why it did not load and how to build one here: a
 * prebuild can still miss on an unusual system (an older glibc or libstdc++ than it
 * was checked against, a musl without a musl prebuild).
 */
function loadBuilt(root: string): NativeBinding {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const gypBuild = require('node-gyp-build') as { path(dir: string): string }
  const howToBuild =
    'To build it from source for this system (needs python3, make and a C++17 compiler): ' +
    `npm rebuild zerocopy --build-from-source, or node-gyp rebuild in ${root}`
  let file: string
  try {
    file = gypBuild.path(root)
  } catch (err) {
    throw Object.assign(
      new Error(`zerocopy: no native binary for ${process.platform}-${process.arch} in ${root}. ${howToBuild}`, { cause: err }),
      { code: 'ERR_ZEROCOPY_NATIVE_LOAD' },
    )
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as NativeBinding
  } catch (err) {
    throw Object.assign(
      new Error(`zerocopy: the native binary ${file} does not load on this system: ${(err as Error).message}. ${howToBuild}`, {
        cause: err,
      }),
      { code: 'ERR_ZEROCOPY_NATIVE_LOAD' },
    )
  }
}
