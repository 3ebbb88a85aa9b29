/**
 * Publishes the node's signed mailbox record in parley's DHT (when it changes and
 * on a timer) and looks up other peers' records, as the peer record's service
 * does (protocols/peer-record/service.ts, README.md §6–§7): every answer is
 * verified again by the reader, and the newest valid one is used.
 */
import { dhtValues } from '../peer-record/dht-values.js'
import { systemClock } from '../../common/clock.js'
import { mailboxRecordKey, openMailboxRecord, selectMailboxRecord } from './record.js'
import type { MailboxRecordInfo } from './record.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { AbortOptions, ComponentLogger, ContentRouting, Logger, PeerId, Startable } from '@libp2p/interface'

const REPUBLISH_INTERVAL = 10 * 60_000
const PUBLISH_DELAY = 1_000
const RETRY_DELAY = 2_000

/** Where the publisher gets the record to publish. */
export interface MailboxRecordSource {
  /** The node's current signed record (marshalled envelope); undefined: nothing to publish yet. */
  record(): Promise<Uint8Array | undefined>
}

export interface MailboxRecordPublisherComponents {
  contentRouting: Pick<ContentRouting, 'put' | 'get'>
  logger: ComponentLogger
  clock?: Clock
}

export interface MailboxRecordPublisherInit {
  source: MailboxRecordSource
  /**
   * Republish at least this often, in ms, even when the record does not change.
   *
   * @default 600000
   */
  republishInterval?: number
  /**
   * Wait this long after `changed()` before publishing, in ms, so that a burst
   * of changes makes one publish.
   *
   * @default 1000
   */
  publishDelay?: number
  /**
   * First retry delay after a failed publish, in ms; doubles up to `republishInterval`.
   *
   * @default 2000
   */
  retryDelay?: number
}

/** A verified record found in the DHT, with the bytes it came as (to pass on, in invites say). */
export type FoundMailboxRecord = MailboxRecordInfo & { bytes: Uint8Array }

export class MailboxRecordPublisher implements Startable {
  readonly [Symbol.toStringTag] = 'parley/mailbox-record'
  /** When the last publish succeeded (ms since epoch, on the clock), if ever. */
  lastPublished?: number
  private readonly log: Logger
  private readonly clock: Clock
  private readonly source: MailboxRecordSource
  private readonly republishInterval: number
  private readonly publishDelay: number
  private readonly retryDelay: number
  private timer?: ClockTimer
  private failures = 0
  private running = false
  private controller = new AbortController()

  constructor (private readonly components: MailboxRecordPublisherComponents, init: MailboxRecordPublisherInit) {
    this.log = components.logger.forComponent('parley:mailbox-record')
    this.clock = components.clock ?? systemClock
    this.source = init.source
    this.republishInterval = init.republishInterval ?? REPUBLISH_INTERVAL
    this.publishDelay = init.publishDelay ?? PUBLISH_DELAY
    this.retryDelay = init.retryDelay ?? RETRY_DELAY
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.controller = new AbortController()
    this.schedule(this.publishDelay)
  }

  stop (): void {
    this.running = false
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
    this.controller.abort()
  }

  /** The record changed (a key rotated, a host came or went): publish it soon. */
  changed (): void {
    if (this.running) this.schedule(this.publishDelay)
  }

  private schedule (delay: number): void {
    this.clock.clearTimeout(this.timer)
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      const signal = this.controller.signal
      this.publish({ signal })
        .then(() => {
          this.failures = 0
          if (!signal.aborted) this.schedule(this.republishInterval)
        })
        .catch((err: Error) => {
          if (signal.aborted) return
          this.failures++
          const retry = Math.min(this.retryDelay * 2 ** (this.failures - 1), this.republishInterval)
          this.log('publishing the mailbox record failed, retrying in %d ms - %e', retry, err)
          this.schedule(retry)
        })
    }, delay)
  }

  /**
   * Publishes the source's current record now; nothing when it has none.
   *
   * @returns whether a record was published
   */
  async publish (options: AbortOptions = {}): Promise<boolean> {
    const bytes = await this.source.record()
    if (bytes == null) {
      this.log('no mailbox record to publish yet')
      return false
    }
    // our own record, checked as every DHT server will check it: a broken one
    // is a bug here, better found in our log than as refusals from the network
    const record = await openMailboxRecord(bytes, { now: this.clock.now() })
    await this.components.contentRouting.put(mailboxRecordKey(record.peerId), bytes, options)
    this.lastPublished = this.clock.now()
    this.log('published mailbox record seq %d with %d keys and %d hosts', record.seq, record.keys.length, record.hosts.length)
    return true
  }

  /** `peerId`'s newest valid mailbox record in the DHT, verified here; undefined when there is none. */
  async lookup (peerId: PeerId, options: AbortOptions = {}): Promise<FoundMailboxRecord | undefined> {
    const key = mailboxRecordKey(peerId)
    const { values: answers, error } = await dhtValues(this.components.contentRouting, key, options)
    if (error != null) this.log('DHT get of the mailbox record of %p failed with %d answers - %e', peerId, answers.length, error)
    // the answers came over the network: check each again at our own time
    const now = this.clock.now()
    const valid: FoundMailboxRecord[] = []
    for (const bytes of answers) {
      try {
        valid.push({ ...await openMailboxRecord(bytes, { now, peerId }), bytes })
      } catch (err: any) {
        this.log('ignoring a mailbox record for %p - %e', peerId, err)
      }
    }
    if (valid.length === 0) {
      this.log('no valid mailbox record for %p', peerId)
      return undefined
    }
    return valid[selectMailboxRecord(key, valid.map(v => v.bytes))]
  }
}
