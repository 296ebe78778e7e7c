// Telling a TCP send's release by ACK from its release by reset. The kernel frees a
// MSG_ZEROCOPY send's pages when the peer acknowledges them, and also when the
// connection dies and it purges the queue unsent; the completion looks the same. So the
// channel records, for each send it hands over, the stream offset just past its last
// byte, and at release asks the kernel how far the peer acknowledged:
//   - a live connection (any state but CLOSE): the release was an ACK, or a deferred
//     copy (local delivery) that will still be delivered: delivered;
//   - CLOSE: delivered only if tcpi_bytes_acked reached the send's end.
// The offset is read from the kernel (TCP_INFO + SIOCOUTQ, exact) only when it is not
// known, and then counted: it becomes unknown whenever bytes enter the stream that the
// channel did not send (Node's own writes, an fd owner's writes between sends).
import { native } from './native'

const TCP_CLOSE = 7

export class TcpDelivery {
  /** The stream offset just past the last byte handed over; -1 unknown. */
  private offset = -1
  /** [bytes acknowledged, tcpi_state], read once per `turn`. */
  private readonly ack = new Float64Array(2)
  private ackTurn = -1

  /** Bytes we do not count are entering the stream: read the offset again when needed. */
  forget(): void {
    this.offset = -1
  }

  /** Before a MSG_ZEROCOPY send: make sure the offset is known. */
  beforeSend(fd: number): void {
    if (this.offset < 0) this.offset = Math.max(-1, native.tcpStreamOffset(fd))
  }

  /** `bytes` more went into the stream from us. */
  sent(bytes: number): void {
    if (this.offset >= 0) this.offset += bytes
  }

  /** Where the send just handed over ends (-1 unknown). */
  get end(): number {
    return this.offset
  }

  /** The acknowledged count may have moved (a drain, a reset): read it again. */
  stale(): void {
    this.ackTurn = -1
  }

  /**
   * Whether a send ending at `end`, whose pages the kernel released, reached the peer.
   * `turn` names the current dispatch; `unknownEnd` answers when the end is unknown.
   */
  delivered(fd: number, end: number, turn: number, unknownEnd: () => boolean): boolean {
    if (this.ackTurn !== turn) {
      this.ackTurn = turn
      if (fd < 0 || native.tcpAckState(fd, this.ack) < 0) this.ack[1] = -1
    }
    if (this.ack[1] !== TCP_CLOSE) return true
    return end >= 0 ? this.ack[0]! >= end : unknownEnd()
  }
}
