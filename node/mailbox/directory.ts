/**
 * The mailbox records of the people this node writes to: which key to seal a
 * message to, and which hosts to leave it on. A record comes from the DHT,
 * from an invite, or with a sealed envelope (its sender's own, so that the
 * recipient can answer); each is verified before use and the newest kept in
 * the store, so that a peer who went offline can still be written to.
 */
import { systemClock } from '../../common/clock.js'
import type { Clock } from '../../common/clock.js'
import type { Store } from '../store/index.js'
import type { AbortOptions, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** A mailbox record whose signature, owner and bounds were checked. */
export interface VerifiedRecord {
  /** The owner, as a peer ID string. */
  peer: string
  seq: number
  /** Newest first. */
  keys: Array<{ publicKey: Uint8Array, expiresAt: number }>
  hosts: Array<{ peerId: PeerId, addrs: Multiaddr[] }>
  /** /im versions the owner reads from its mailbox besides /im/1.0.0. */
  reads?: string[]
  /** The signed record as received, to keep and to pass on. */
  bytes: Uint8Array
}

export interface MailboxDirectoryComponents {
  store: Pick<Store, 'mailboxRecord' | 'saveMailboxRecord'>
  /** Checks a signed record of `peer`; throws when it is not one (bad signature, another owner, out of bounds). */
  verify: (bytes: Uint8Array, peer: string) => Promise<VerifiedRecord>
  /** The record `peer` published in the DHT, if one is found. */
  lookup?: (peer: string, options: AbortOptions) => Promise<Uint8Array | undefined>
  /** @default systemClock */
  clock?: Pick<Clock, 'now'>
}

export interface MailboxDirectoryInit {
  /**
   * A record kept for longer than this is looked up again in the DHT before
   * use (the kept one is used when the lookup finds nothing newer), in ms.
   *
   * @default 600000 (10 minutes, as often as owners republish)
   */
  refreshAfter?: number

  /**
   * Verified records kept in memory (the store keeps them all).
   *
   * @default 1000
   */
  cacheSize?: number
}

/** The key a sender seals to: the newest one that has not expired. */
export function sealingKey (record: VerifiedRecord, now: number): Uint8Array | undefined {
  return record.keys.find(key => key.expiresAt > now)?.publicKey
}

export class MailboxDirectory {
  private readonly components: MailboxDirectoryComponents
  private readonly clock: Pick<Clock, 'now'>
  private readonly refreshAfter: number
  private readonly cacheSize: number
  /** Verified records by owner, least recently used first, and when each was last checked against the DHT. */
  private readonly cache = new Map<string, { record: VerifiedRecord, checkedAt: number }>()

  constructor (components: MailboxDirectoryComponents, init: MailboxDirectoryInit = {}) {
    this.components = components
    this.clock = components.clock ?? systemClock
    this.refreshAfter = init.refreshAfter ?? 10 * 60_000
    this.cacheSize = init.cacheSize ?? 1_000
  }

  /**
   * The newest usable record of `peer` (one with a key that has not
   * expired), looked up in the DHT when the one kept is old or missing.
   */
  async get (peer: string, options: AbortOptions = {}): Promise<VerifiedRecord | undefined> {
    const now = this.clock.now()
    let known = this.cache.get(peer)
    if (known == null) {
      const kept = this.components.store.mailboxRecord(peer)
      if (kept != null) {
        const record = await this.components.verify(kept.record, peer).catch(() => undefined)
        if (record != null) known = this.remember(record, kept.updatedAt)
      }
    }
    if ((known == null || now - known.checkedAt >= this.refreshAfter || sealingKey(known.record, now) == null) && this.components.lookup != null) {
      try {
        const found = await this.components.lookup(peer, options)
        if (found != null) await this.learn(peer, found)
      } catch {
        // the DHT had nothing (or nothing valid): the kept one, if usable, still serves
      }
      known = this.cache.get(peer)
      if (known != null) known.checkedAt = now
    }
    if (known == null || sealingKey(known.record, now) == null) return undefined
    return known.record
  }

  /**
   * A signed record of `peer` from elsewhere (an invite, an envelope): kept
   * when it verifies and is newer than the one held. Throws when it does not verify.
   */
  async learn (peer: string, bytes: Uint8Array): Promise<VerifiedRecord> {
    const record = await this.components.verify(bytes, peer)
    const held = this.cache.get(peer)
    if (held != null && held.record.seq >= record.seq) return held.record
    const now = this.clock.now()
    this.components.store.saveMailboxRecord(peer, record.bytes, record.seq, now)
    this.remember(record, now)
    return record
  }

  private remember (record: VerifiedRecord, checkedAt: number): { record: VerifiedRecord, checkedAt: number } {
    const entry = { record, checkedAt }
    this.cache.delete(record.peer)
    this.cache.set(record.peer, entry)
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value as string)
    return entry
  }
}
