import { stringify as uuidToString } from 'uuid'
import type { Store, StoredMessage } from './store/index.js'
import type { InboundMessage, Refusal, StoreResult } from '../protocols/im/index.js'

/** A gap in a conversation's seqs is given up after this long (spec section 6). */
export const GAP_TIMEOUT = 60_000

/**
 * Receives messages for the /im service: dedups on (sender, id) in the store
 * before the ack, and presents each conversation in seq order, holding later
 * messages while an earlier seq is missing (never dropping them).
 */
export class Inbox {
  private gapTimer?: ReturnType<typeof setTimeout>
  private stopped = false

  constructor (
    private readonly store: Store,
    private readonly present: (messages: StoredMessage[]) => void,
    private readonly gapTimeout = GAP_TIMEOUT
  ) {}

  start (): void {
    this.stopped = false
    this.releaseExpiredGaps()
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.gapTimer)
  }

  /** The /im `store` callback: durable in SQLite when it returns. */
  receive (message: InboundMessage): StoreResult {
    const { result, presented } = this.store.receive({
      peer: message.from.toString(),
      id: uuidToString(message.id),
      seq: message.seq,
      body: message.body,
      contentType: message.contentType,
      replyTo: message.replyTo == null ? undefined : uuidToString(message.replyTo),
      sentAt: message.sentAt,
      receivedAt: Date.now(),
      path: message.path
    })
    this.after(presented)
    return result
  }

  /** The /im `onRefused` hook: a refused message still fills its seq. */
  refused (refusal: Refusal): void {
    const seq = Number(refusal.seq)
    if (seq < 1 || !Number.isSafeInteger(seq)) return
    this.after(this.store.refuseSeq(refusal.from.toString(), seq, Date.now()))
  }

  private after (presented: StoredMessage[]): void {
    if (presented.length > 0) this.present(presented)
    this.armGapTimer()
  }

  private armGapTimer (): void {
    clearTimeout(this.gapTimer)
    const oldest = this.store.oldestGap()
    if (oldest == null || this.stopped) return
    this.gapTimer = setTimeout(() => { this.releaseExpiredGaps() }, Math.max(0, oldest + this.gapTimeout - Date.now()))
    this.gapTimer.unref?.()
  }

  private releaseExpiredGaps (): void {
    if (this.stopped) return
    this.after(this.store.releaseGaps(Date.now(), this.gapTimeout))
  }
}
