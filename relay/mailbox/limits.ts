/**
 * What a mailbox host lets its users spend, and the admission decisions over
 * those limits (spec §7). Pure: no I/O, time comes in as an argument, so every
 * rule is unit-tested without a relay. The service (./service.ts) asks these
 * functions and answers with the status they name.
 */
import { MAX_ENVELOPE_BYTES } from '../../protocols/mailbox/protocol.js'
import { Response } from '../../protocols/mailbox/pb/mailbox.js'

const DAY = 24 * 60 * 60_000

/** The operator's mailbox limits (the relay config's `mailbox` section). */
export interface MailboxLimits {
  /** Mailboxes the host keeps; registering one more is refused UNAVAILABLE. */
  maxMailboxes: number
  /** Envelopes one mailbox holds at most. */
  maxEnvelopesPerMailbox: number
  /** Envelope bytes one mailbox holds at most. */
  maxBytesPerMailbox: number
  /** The percentage of a mailbox's envelopes, and of its bytes, one depositor may fill. */
  depositorSharePercent: number
  /** Largest envelope accepted (at most the spec's 65,536 bytes). */
  maxEnvelopeBytes: number
  /** Deposits one peer may make per second, on average, and at once. */
  depositsPerSecondPerPeer: number
  depositBurstPerPeer: number
  /** Deposits peers from one IPv4 address or IPv6 /64 may make per second, on average, and at once. */
  depositsPerSecondPerIp: number
  depositBurstPerIp: number
  /** TTL of an envelope deposited with `ttl_ms` 0, and the longest granted, in ms. */
  defaultTtl: number
  maxTtl: number
  /** How long a mailbox lives after its owner's last Register or Open, in ms. */
  mailboxLease: number
  /** Open sessions at once, over all owners. */
  maxSessions: number
  /** Mailbox streams one connection may have open at once. */
  maxStreamsPerConnection: number
  /** A stream with no request for this long (outside an Open session) is closed, in ms. */
  idleTimeout: number
  /** How often expired envelopes and mailboxes are deleted, in ms. */
  sweepInterval: number
}

export const MAILBOX_DEFAULTS: MailboxLimits = {
  maxMailboxes: 10_000,
  maxEnvelopesPerMailbox: 1_000,
  maxBytesPerMailbox: 16 * 1024 * 1024,
  depositorSharePercent: 25,
  maxEnvelopeBytes: MAX_ENVELOPE_BYTES,
  depositsPerSecondPerPeer: 10,
  depositBurstPerPeer: 50,
  depositsPerSecondPerIp: 20,
  depositBurstPerIp: 100,
  defaultTtl: 14 * DAY,
  maxTtl: 30 * DAY,
  mailboxLease: 30 * DAY,
  maxSessions: 1_000,
  maxStreamsPerConnection: 8,
  idleTimeout: 60_000,
  sweepInterval: 60_000
}

/** A refusal: the status answered, the reason (for people and the metrics' label), and when to retry. */
export interface Refusal {
  status: Response.Status
  reason: string
  retryAfterMs?: number
}

/** What a mailbox holds now, and what one depositor put in it. */
export interface MailboxUsage {
  envelopes: number
  bytes: number
}

/** An envelope's size against the limit: TOO_LARGE, INVALID when empty, else undefined. */
export function checkEnvelopeSize (size: number, limits: Pick<MailboxLimits, 'maxEnvelopeBytes'>): Refusal | undefined {
  if (size === 0) return { status: Response.Status.INVALID, reason: 'the envelope is empty' }
  const max = Math.min(limits.maxEnvelopeBytes, MAX_ENVELOPE_BYTES)
  if (size > max) return { status: Response.Status.TOO_LARGE, reason: `the envelope is ${size} bytes, over this host's ${max}` }
  return undefined
}

/** The most one depositor may hold in one mailbox: its share of each limit, at least one envelope of the largest size. */
export function depositorQuota (limits: Pick<MailboxLimits, 'maxEnvelopesPerMailbox' | 'maxBytesPerMailbox' | 'depositorSharePercent' | 'maxEnvelopeBytes'>): MailboxUsage {
  const share = Math.min(100, Math.max(0, limits.depositorSharePercent)) / 100
  return {
    envelopes: Math.max(1, Math.floor(limits.maxEnvelopesPerMailbox * share)),
    bytes: Math.max(limits.maxEnvelopeBytes, Math.floor(limits.maxBytesPerMailbox * share))
  }
}

/**
 * Whether one more envelope of `size` bytes fits: in the mailbox (QUOTA_EXCEEDED
 * when full) and in the depositor's share of it (QUOTA_EXCEEDED too, so a
 * flooding sender fills its share and no more, and others still get in).
 */
export function checkQuota (size: number, mailbox: MailboxUsage, depositor: MailboxUsage, limits: Pick<MailboxLimits, 'maxEnvelopesPerMailbox' | 'maxBytesPerMailbox' | 'depositorSharePercent' | 'maxEnvelopeBytes'>): Refusal | undefined {
  if (mailbox.envelopes + 1 > limits.maxEnvelopesPerMailbox || mailbox.bytes + size > limits.maxBytesPerMailbox) {
    return { status: Response.Status.QUOTA_EXCEEDED, reason: 'the mailbox is full' }
  }
  const quota = depositorQuota(limits)
  if (depositor.envelopes + 1 > quota.envelopes || depositor.bytes + size > quota.bytes) {
    return { status: Response.Status.QUOTA_EXCEEDED, reason: 'this depositor\'s share of the mailbox is full' }
  }
  return undefined
}

/** Whether a new mailbox may be created (a renewal always may). */
export function checkRegister (exists: boolean, mailboxes: number, limits: Pick<MailboxLimits, 'maxMailboxes'>): Refusal | undefined {
  if (exists || mailboxes < limits.maxMailboxes) return undefined
  return { status: Response.Status.UNAVAILABLE, reason: 'this host holds as many mailboxes as it offers' }
}

/** The TTL granted for a requested one: 0 is the default, more than the maximum is shortened to it. */
export function grantedTtl (requestedMs: bigint | number, limits: Pick<MailboxLimits, 'defaultTtl' | 'maxTtl'>): number {
  const requested = typeof requestedMs === 'bigint'
    ? (requestedMs > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(requestedMs))
    : requestedMs
  if (requested <= 0) return Math.min(limits.defaultTtl, limits.maxTtl)
  return Math.min(requested, limits.maxTtl)
}

/** When a mailbox registered or opened at `now` expires. */
export function leaseExpiry (now: number, limits: Pick<MailboxLimits, 'mailboxLease'>): number {
  return now + limits.mailboxLease
}

/** Whether one more Open session may start (one replacing the owner's own always may). */
export function checkSession (replacing: boolean, sessions: number, limits: Pick<MailboxLimits, 'maxSessions'>): Refusal | undefined {
  if (replacing || sessions < limits.maxSessions) return undefined
  return { status: Response.Status.UNAVAILABLE, reason: 'too many mailboxes are open on this host now', retryAfterMs: 30_000 }
}

interface Bucket {
  tokens: number
  at: number
}

/** How often, at most, buckets that are full again are forgotten. */
const FORGET_INTERVAL_MS = 60_000

/**
 * Deposit rate limits: a token bucket per depositor peer and one per source
 * IP (IPv4 address or IPv6 /64, as relay/connections.ts counts), both of which
 * must hold a token. Only counters in memory, forgotten once full again: no
 * depositor is written anywhere.
 */
export class DepositRateLimiter {
  private readonly peers = new Map<string, Bucket>()
  private readonly ips = new Map<string, Bucket>()
  private lastForget = 0

  constructor (private readonly limits: Pick<MailboxLimits, 'depositsPerSecondPerPeer' | 'depositBurstPerPeer' | 'depositsPerSecondPerIp' | 'depositBurstPerIp'>) {}

  /** Peers and IPs with a bucket now (for tests: the maps stay bounded by activity). */
  get tracked (): number {
    return this.peers.size + this.ips.size
  }

  /**
   * Takes a token from the peer's bucket and the IP's (when the connection
   * has one), or takes none and says when the emptier one has a token again.
   */
  take (peer: string, ip: string | undefined, now: number): Refusal | undefined {
    if (now - this.lastForget >= FORGET_INTERVAL_MS) this.forget(now)
    const peerBucket = this.refill(this.peers, peer, this.limits.depositsPerSecondPerPeer, this.limits.depositBurstPerPeer, now)
    const ipBucket = ip == null ? undefined : this.refill(this.ips, ip, this.limits.depositsPerSecondPerIp, this.limits.depositBurstPerIp, now)
    const waits = [
      peerBucket.tokens >= 1 ? 0 : Math.ceil((1 - peerBucket.tokens) * 1000 / this.limits.depositsPerSecondPerPeer),
      ipBucket == null || ipBucket.tokens >= 1 ? 0 : Math.ceil((1 - ipBucket.tokens) * 1000 / this.limits.depositsPerSecondPerIp)
    ]
    const wait = Math.max(...waits)
    if (wait > 0) {
      return { status: Response.Status.RATE_LIMITED, reason: waits[0] > 0 ? 'too many deposits from this peer' : 'too many deposits from this address', retryAfterMs: Math.max(1, wait) }
    }
    peerBucket.tokens -= 1
    if (ipBucket != null) ipBucket.tokens -= 1
    return undefined
  }

  private refill (map: Map<string, Bucket>, key: string, rate: number, burst: number, now: number): Bucket {
    let bucket = map.get(key)
    if (bucket == null) {
      bucket = { tokens: burst, at: now }
      map.set(key, bucket)
      return bucket
    }
    const elapsed = Math.max(0, now - bucket.at)
    bucket.tokens = Math.min(burst, bucket.tokens + elapsed * rate / 1000)
    bucket.at = now
    return bucket
  }

  private forget (now: number): void {
    this.lastForget = now
    // a bucket untouched long enough to be full again is the same as none
    const full = [
      { map: this.peers, after: this.limits.depositBurstPerPeer * 1000 / this.limits.depositsPerSecondPerPeer },
      { map: this.ips, after: this.limits.depositBurstPerIp * 1000 / this.limits.depositsPerSecondPerIp }
    ]
    for (const { map, after } of full) {
      for (const [key, bucket] of map) {
        if (now - bucket.at >= after) map.delete(key)
      }
    }
  }
}
