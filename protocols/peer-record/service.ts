import { dhtValues } from './dht-values.js'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { CODE_P2P } from '@multiformats/multiaddr'
import { peerRecordKey, selectPeerRecord, validatePeerRecord } from './record.js'
import type { PeerRecordComponents, PeerRecordInit, PeerRecordPublisher } from './index.js'
import type { AbortOptions, Logger, PeerId, Startable } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const REPUBLISH_INTERVAL = 10 * 60_000
const PUBLISH_DELAY = 1_000
const RETRY_DELAY = 2_000

/** Publishes this node's signed peer record on address changes and on a timer. */
export class PeerRecordService implements Startable, PeerRecordPublisher {
  readonly [Symbol.toStringTag] = 'parley/peer-record'
  lastPublished?: number
  private readonly log: Logger
  private readonly republishInterval: number
  private readonly publishDelay: number
  private readonly retryDelay: number
  private timer?: ReturnType<typeof setTimeout>
  private failures = 0
  private controller = new AbortController()
  private publishedAddrs = ''
  private lastSeq = 0n

  constructor (private readonly components: PeerRecordComponents, init: PeerRecordInit) {
    this.log = components.logger.forComponent('parley:peer-record')
    this.republishInterval = init.republishInterval ?? REPUBLISH_INTERVAL
    this.publishDelay = init.publishDelay ?? PUBLISH_DELAY
    this.retryDelay = init.retryDelay ?? RETRY_DELAY
    this.onSelfUpdate = this.onSelfUpdate.bind(this)
  }

  start (): void {
    this.controller = new AbortController()
    this.components.events.addEventListener('self:peer:update', this.onSelfUpdate)
  }

  afterStart (): void {
    this.schedule(this.publishDelay)
  }

  stop (): void {
    this.components.events.removeEventListener('self:peer:update', this.onSelfUpdate)
    clearTimeout(this.timer)
    this.controller.abort()
  }

  private onSelfUpdate (): void {
    const addrs = this.currentAddrs().map(a => a.toString()).sort().join(' ')
    if (addrs !== this.publishedAddrs) {
      this.schedule(this.publishDelay)
    }
  }

  private schedule (delay: number): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.publish({ signal: this.controller.signal })
        .then(() => {
          this.failures = 0
          this.schedule(this.republishInterval)
        })
        .catch((err: Error) => {
          if (this.controller.signal.aborted) {
            return
          }
          this.failures++
          const retry = Math.min(this.retryDelay * 2 ** (this.failures - 1), this.republishInterval)
          this.log('publishing peer record failed, retrying in %d ms - %e', retry, err)
          this.schedule(retry)
        })
    }, delay)
    this.timer.unref?.()
  }

  /** The addresses others can dial, without our own /p2p suffix (PeerRecord carries the id). */
  private currentAddrs (): Multiaddr[] {
    const self = this.components.peerId.toString()
    return this.components.addressManager.getAddresses().map(ma => {
      const components = ma.getComponents()
      const last = components[components.length - 1]
      return last?.code === CODE_P2P && last.value === self ? ma.decapsulateCode(CODE_P2P) : ma
    })
  }

  async publish (options: AbortOptions = {}): Promise<void> {
    const multiaddrs = this.currentAddrs()
    if (multiaddrs.length === 0) {
      throw new Error('no addresses to publish yet')
    }
    // seq is the signing time in ms (the spec's validity period counts from it),
    // strictly increasing here even if two publishes share a millisecond or the
    // clock steps back: DHT servers refuse a record whose seq is not above theirs
    const now = BigInt(Date.now())
    this.lastSeq = now > this.lastSeq ? now : this.lastSeq + 1n
    const record = new PeerRecord({ peerId: this.components.peerId, multiaddrs, seqNumber: this.lastSeq })
    const envelope = await RecordEnvelope.seal(record, this.components.privateKey)
    await this.components.contentRouting.put(peerRecordKey(this.components.peerId), envelope.marshal(), options)
    this.publishedAddrs = multiaddrs.map(a => a.toString()).sort().join(' ')
    this.lastPublished = Date.now()
    this.log('published peer record with %d addresses', multiaddrs.length)
  }

  async lookup (peerId: PeerId, options: AbortOptions = {}): Promise<Multiaddr[]> {
    const key = peerRecordKey(peerId)
    const { values: answers, error } = await dhtValues(this.components.contentRouting, key, options)
    if (error != null) this.log('DHT get of the peer record of %p failed with %d answers - %e', peerId, answers.length, error)
    // the answers came over the network: check each again (signature, expiry)
    // and keep the newest
    const now = Date.now()
    const valid = (await Promise.all(answers.map(async value => {
      try {
        await validatePeerRecord(key, value, now)
        return value
      } catch (err: any) {
        this.log('ignoring a peer record for %p - %e', peerId, err)
        return undefined
      }
    }))).filter(value => value != null)
    if (valid.length === 0) {
      this.log('no valid peer record for %p', peerId)
      return []
    }
    const best = valid[selectPeerRecord(key, valid)]
    return (await validatePeerRecord(key, best, now)).multiaddrs
  }
}
