/**
 * Who may put what in this node's store, and how fast: the block list, message
 * requests (a stranger's messages wait for the user's decision, up to a
 * quota, as Signal's message requests do), rate limits for everyone and a cap
 * on the store's size. Pure bookkeeping with an injected clock: it decides,
 * the node carries the decision out (answers BLOCKED or RATE_LIMITED, stores
 * the message as a request).
 *
 * A peer is trusted once it is a contact or its request was accepted; every
 * other peer is a stranger. Limits are answered RATE_LIMITED with a
 * retry-after, so an honest sender's outbox keeps the messages and nothing is
 * lost; a peer that keeps sending while told to wait is reported as abusive.
 */

/** The limits, each with its default in `DEFAULT_LIMITS`. */
export interface PolicyLimits {
  /** Messages one stranger may have waiting as a request. */
  requestMessages: number
  /** Bytes (UTF-8 bodies) one stranger may have waiting as a request. */
  requestBytes: number
  /** Messages all strangers together may have waiting. */
  allRequestMessages: number
  /** Bytes all strangers together may have waiting. */
  allRequestBytes: number
  /** Messages a second one stranger may send, sustained (token bucket). */
  strangerRate: number
  /** ... and in a burst. */
  strangerBurst: number
  /** Messages a second all strangers together may send, sustained: fresh identities cost nothing. */
  allStrangersRate: number
  allStrangersBurst: number
  /** Body bytes a second a trusted peer may send, sustained. */
  trustedBytesRate: number
  trustedBytesBurst: number
  /** Messages of one sender held for an earlier seq (spec 6): past it, RATE_LIMITED. */
  maxHeldPerPeer: number
  /** Bytes the message store may use; past it every inbound message is answered RATE_LIMITED and sending is refused. */
  maxStoreBytes: number
  /** How long a sender over a limit is told to wait, ms. */
  retryAfterMs: number
  /** How long a stranger over its request quota is told to wait (until the user decides), ms. */
  requestRetryAfterMs: number
  /** How long a peer that kept sending while told to wait is refused connections, ms. */
  abusePenaltyMs: number
  /** Messages a peer may still send after being told to wait before it counts as abusive (a pipelined window is in flight). */
  abuseThreshold: number
}

export const DEFAULT_LIMITS: PolicyLimits = {
  requestMessages: 50,
  requestBytes: 256 * 1024,
  allRequestMessages: 1_000,
  allRequestBytes: 8 * 1024 * 1024,
  strangerRate: 2,
  strangerBurst: 20,
  allStrangersRate: 50,
  allStrangersBurst: 200,
  trustedBytesRate: 4 * 1024 * 1024,
  trustedBytesBurst: 32 * 1024 * 1024,
  maxHeldPerPeer: 1_000,
  maxStoreBytes: 4 * 1024 * 1024 * 1024,
  retryAfterMs: 10_000,
  requestRetryAfterMs: 2 * 60_000,
  abusePenaltyMs: 5 * 60_000,
  abuseThreshold: 256
}

/** What the node must do with one message. */
export type Verdict =
  | { status: 'accept', request: boolean }
  | { status: 'block' }
  | { status: 'rate-limit', retryAfterMs: number, reason: RateLimitReason }

export type RateLimitReason = 'rate' | 'request-quota' | 'all-requests-quota' | 'storage-full' | 'held'

/** Per-peer state kept in memory: bounded (see MAX_TRACKED). */
interface PeerBook {
  tokens: number
  refilledAt: number
  /** Told to wait until then. */
  waitUntil: number
  /** Messages sent while told to wait. */
  violations: number
  /** Abusive: its connections are refused until then. */
  deniedUntil?: number
}

interface Usage { messages: number, bytes: number }

/** Peers whose rate state is kept; past it the least recently seen is forgotten (its bucket starts full again). */
const MAX_TRACKED = 10_000

export class Policy {
  readonly limits: PolicyLimits
  private readonly trusted = new Set<string>()
  private readonly blockedPeers = new Set<string>()
  private readonly books = new Map<string, PeerBook>()
  private readonly strangers: PeerBook
  /** Each stranger's waiting requests (stored, plus reserved while being stored). */
  private readonly requests = new Map<string, Usage>()
  private readonly allRequests: Usage = { messages: 0, bytes: 0 }
  private storeFull = false
  /** Told when a peer kept sending while told to wait: the node drops its connections. */
  onAbuse?: (peer: string) => void

  constructor (
    limits: Partial<PolicyLimits> = {},
    private readonly now: () => number = Date.now
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
    this.strangers = { tokens: this.limits.allStrangersBurst, refilledAt: now(), waitUntil: 0, violations: 0 }
  }

  // ---- what the node tells it ----

  /** The peer became trusted or a stranger: its bucket starts over at the other rate. */
  trust (peer: string, trusted = true): void {
    if (trusted === this.trusted.has(peer)) return
    if (trusted) this.trusted.add(peer)
    else this.trusted.delete(peer)
    this.books.delete(peer)
  }

  block (peer: string, blocked = true): void {
    if (blocked) this.blockedPeers.add(peer)
    else this.blockedPeers.delete(peer)
  }

  isTrusted (peer: string): boolean {
    return this.trusted.has(peer)
  }

  isBlocked (peer: string): boolean {
    return this.blockedPeers.has(peer)
  }

  /** How many peers are blocked. */
  get blockedCount (): number {
    return this.blockedPeers.size
  }

  /** Kept sending while told to wait, and its penalty is not over: refuse its connections. */
  isDenied (peer: string): boolean {
    const until = this.books.get(peer)?.deniedUntil
    return until != null && until > this.now()
  }

  /** What the store holds as requests (at start). */
  loadRequests (rows: Array<{ peer: string, messages: number, bytes: number }>): void {
    this.requests.clear()
    this.allRequests.messages = 0
    this.allRequests.bytes = 0
    for (const r of rows) {
      this.requests.set(r.peer, { messages: r.messages, bytes: r.bytes })
      this.allRequests.messages += r.messages
      this.allRequests.bytes += r.bytes
    }
  }

  /** The peer's requests left the store (accepted, declined or blocked). */
  clearRequests (peer: string): void {
    const usage = this.requests.get(peer)
    if (usage == null) return
    this.requests.delete(peer)
    this.allRequests.messages -= usage.messages
    this.allRequests.bytes -= usage.bytes
  }

  setStoreFull (full: boolean): void {
    this.storeFull = full
  }

  get full (): boolean {
    return this.storeFull
  }

  // ---- decisions ----

  /**
   * Cheap, before a message is even looked at: a blocked peer, a peer told to
   * wait, a full store. `undefined`: go on to `check`.
   */
  admit (peer: string): Verdict | undefined {
    return this.early(peer, this.now(), true)
  }

  private early (peer: string, now: number, count: boolean): Verdict | undefined {
    if (this.blockedPeers.has(peer)) return { status: 'block' }
    const book = this.books.get(peer)
    if (book != null && book.waitUntil > now) {
      // in flight when it was told to wait, or not listening
      if (count && ++book.violations === this.limits.abuseThreshold) {
        book.deniedUntil = now + this.limits.abusePenaltyMs
        this.onAbuse?.(peer)
      }
      return { status: 'rate-limit', retryAfterMs: book.waitUntil - now, reason: 'rate' }
    }
    if (this.storeFull) return this.tellToWait(peer, this.limits.retryAfterMs, 'storage-full')
    return undefined
  }

  /**
   * Decides on one message of `bytes` body bytes (after `admit`). An accepted
   * stranger's message is reserved against its request quota until `settle`
   * says whether it was stored.
   */
  check (peer: string, bytes: number): Verdict {
    const now = this.now()
    const early = this.early(peer, now, false)
    if (early != null) return early
    const book = this.book(peer, now)
    if (this.trusted.has(peer)) {
      const rate = this.limits.trustedBytesRate
      refill(book, now, rate, this.limits.trustedBytesBurst)
      if (book.tokens < bytes) return this.tellToWait(peer, Math.ceil((bytes - book.tokens) / rate * 1000), 'rate')
      book.tokens -= bytes
      return { status: 'accept', request: false }
    }

    const usage = this.requests.get(peer) ?? { messages: 0, bytes: 0 }
    if (usage.messages + 1 > this.limits.requestMessages || usage.bytes + bytes > this.limits.requestBytes) {
      return this.tellToWait(peer, this.limits.requestRetryAfterMs, 'request-quota')
    }
    if (this.allRequests.messages + 1 > this.limits.allRequestMessages || this.allRequests.bytes + bytes > this.limits.allRequestBytes) {
      return this.tellToWait(peer, this.limits.requestRetryAfterMs, 'all-requests-quota')
    }
    refill(book, now, this.limits.strangerRate, this.limits.strangerBurst)
    refill(this.strangers, now, this.limits.allStrangersRate, this.limits.allStrangersBurst)
    if (book.tokens < 1) return this.tellToWait(peer, Math.ceil((1 - book.tokens) / this.limits.strangerRate * 1000), 'rate')
    if (this.strangers.tokens < 1) return this.tellToWait(peer, Math.ceil((1 - this.strangers.tokens) / this.limits.allStrangersRate * 1000), 'rate')
    book.tokens -= 1
    this.strangers.tokens -= 1
    usage.messages += 1
    usage.bytes += bytes
    this.requests.set(peer, usage)
    this.allRequests.messages += 1
    this.allRequests.bytes += bytes
    return { status: 'accept', request: true }
  }

  /** A message `check` accepted as a request was stored, or not (a duplicate, an error, held-full): release its reservation. */
  settle (peer: string, bytes: number, request: boolean, stored: boolean): void {
    if (!request || stored) return
    const usage = this.requests.get(peer)
    if (usage == null) return
    usage.messages -= 1
    usage.bytes -= bytes
    this.allRequests.messages -= 1
    this.allRequests.bytes -= bytes
    if (usage.messages <= 0) this.requests.delete(peer)
  }

  /** Tells the peer to wait `ms` (the sender's outbox keeps what it sent). */
  private tellToWait (peer: string, ms: number, reason: RateLimitReason): Verdict {
    const now = this.now()
    const book = this.book(peer, now)
    book.waitUntil = Math.max(book.waitUntil, now + ms)
    book.violations = 0
    return { status: 'rate-limit', retryAfterMs: book.waitUntil - now, reason }
  }

  /** How much strangers' requests take now. */
  requestUsage (): { messages: number, bytes: number, peers: number } {
    return { ...this.allRequests, peers: this.requests.size }
  }

  private book (peer: string, now: number): PeerBook {
    let book = this.books.get(peer)
    if (book != null) {
      // most recently seen last: the first entry is the one to forget
      this.books.delete(peer)
    } else {
      const trusted = this.trusted.has(peer)
      book = { tokens: trusted ? this.limits.trustedBytesBurst : this.limits.strangerBurst, refilledAt: now, waitUntil: 0, violations: 0 }
      if (this.books.size >= MAX_TRACKED) {
        const oldest = this.books.keys().next().value
        if (oldest != null) this.books.delete(oldest)
      }
    }
    this.books.set(peer, book)
    return book
  }
}

function refill (book: PeerBook, now: number, rate: number, burst: number): void {
  const elapsed = Math.max(0, now - book.refilledAt)
  book.tokens = Math.min(burst, book.tokens + elapsed * rate / 1000)
  book.refilledAt = now
}
