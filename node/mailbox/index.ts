/**
 * The node's mailboxes, put together: its own mailbox keys and signed record
 * (published in the DHT, carried in invites and in every envelope it seals),
 * the directory of other people's records, the depositor the outbox uses for
 * unreachable recipients, and the receiver that drains this node's mailboxes
 * on its hosts. The contract is protocols/mailbox/README.md.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { systemClock } from '../../common/clock.js'
import { MailboxClient } from '../../protocols/mailbox/client.js'
import { openEnvelope, sealEnvelope } from '../../protocols/mailbox/envelope.js'
import { MailboxRecordPublisher } from '../../protocols/mailbox/publisher.js'
import { openMailboxRecord, signMailboxRecord } from '../../protocols/mailbox/record.js'
import { GROUP_PROTOCOL } from '../../protocols/im/index.js'
import { MailboxDepositor } from './depositor.js'
import { MailboxDirectory } from './directory.js'
import { MailboxKeys } from './keys.js'
import { MailboxReceiver } from './receiver.js'
import type { MailboxContent, MailboxHost } from './depositor.js'
import type { MailboxStatus, ReceiveTransport } from './receiver.js'
import type { Clock } from '../../common/clock.js'
import type { DeliveryEngine } from '../outbox/delivery.js'
import type { Reception } from '../reception.js'
import type { Store } from '../store/index.js'
import type { AbortOptions, ComponentLogger, ContentRouting, PeerId, PeerStore, PrivateKey, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export type { MailboxStatus } from './receiver.js'

/** How often the node checks whether its mailbox key is due for rotation (ms). */
const ROTATION_CHECK = 60 * 60_000

/** The record is signed anew when its signature is this old (ms): DHT servers refuse one a day old. */
const RESIGN_AFTER = 60 * 60_000

/** Hosts whose addresses were put in the peer store, at most: the rest are put again when next used. */
const KNOWN_HOSTS = 1_000

export interface MailboxesComponents {
  peerId: PeerId
  privateKey: PrivateKey
  peerStore: Pick<PeerStore, 'merge'>
  dialProtocol: (peer: PeerId, protocol: string, options?: AbortOptions) => Promise<Stream>
  contentRouting: Pick<ContentRouting, 'put' | 'get'>
  store: Pick<Store, 'mailboxRecord' | 'saveMailboxRecord'>
  logger: ComponentLogger
  /** @default systemClock */
  clock?: Clock
}

export interface MailboxesInit {
  /** Where the mailbox keys are kept; none: in memory. */
  dataDir?: string
  /** This node's mailbox hosts (`…/p2p/<relay id>`); none: no mailbox of its own (it can still deposit in others'). */
  hosts: Multiaddr[]
}

/** A host multiaddr split into its peer ID and the address to dial it at. */
function hostOf (address: Multiaddr): MailboxHost {
  const id = address.getComponents().findLast(c => c.name === 'p2p')?.value
  if (id == null) throw new Error(`a mailbox host needs its peer ID: ${address.toString()} has no /p2p/`)
  const components = address.getComponents()
  const last = components.findLastIndex(c => c.name === 'p2p')
  return { peerId: peerIdFromString(id), addrs: [multiaddr(components.slice(0, last))] }
}

/**
 * The mailbox parts of a node. The depositor is handed to the delivery
 * engine before the receiver is built (the receiver hands receipts to the
 * engine): `create`, then `startReceiving` once the engine exists.
 */
export interface MailboxesEvents {
  /** One of this node's mailboxes changed: a session opened or ended, envelopes arrived. */
  change: CustomEvent<MailboxStatus>
}

export class Mailboxes extends TypedEventEmitter<MailboxesEvents> {
  readonly depositor: MailboxDepositor
  readonly directory: MailboxDirectory
  readonly publisher: MailboxRecordPublisher
  private readonly components: MailboxesComponents
  private readonly clock: Clock
  private readonly keys: MailboxKeys
  private readonly client: MailboxClient
  private hosts: MailboxHost[]
  private readonly knownHosts = new Set<string>()
  private receiver?: MailboxReceiver
  private record?: Uint8Array
  private lastSeq = 0
  private rotationTimer?: ReturnType<typeof setInterval>

  private constructor (components: MailboxesComponents, keys: MailboxKeys, hosts: MailboxHost[]) {
    super()
    this.components = components
    this.clock = components.clock ?? systemClock
    this.keys = keys
    this.hosts = hosts
    this.client = new MailboxClient({ dialer: { dialProtocol: components.dialProtocol }, logger: components.logger })
    this.publisher = new MailboxRecordPublisher({ contentRouting: components.contentRouting, logger: components.logger, clock: this.clock }, {
      source: { record: async () => this.hosts.length === 0 ? undefined : this.ownRecord() }
    })
    this.directory = new MailboxDirectory({
      store: components.store,
      clock: this.clock,
      verify: async (bytes, peer) => {
        // a record from an invite or an envelope may be days old: its keys say how long it serves
        const record = await openMailboxRecord(bytes, { now: this.clock.now(), peerId: peerIdFromString(peer), ignoreAge: true })
        return { peer, seq: record.seq, keys: record.keys, hosts: record.hosts, reads: record.reads ?? [], bytes }
      },
      lookup: async (peer, options) => (await this.publisher.lookup(peerIdFromString(peer), options))?.bytes
    })
    this.depositor = new MailboxDepositor({
      directory: this.directory,
      transport: {
        depositMany: async (host, mailbox, envelopes, options) => {
          await this.know(host)
          return this.client.depositMany(host.peerId, mailbox, envelopes, options)
        }
      },
      seal: async (recipient, recipientKey, content) => this.seal(recipient, recipientKey, content),
      peerId: peerIdFromString,
      logger: components.logger,
      clock: this.clock
    })
  }

  static async create (components: MailboxesComponents, init: MailboxesInit): Promise<Mailboxes> {
    const keys = await MailboxKeys.open({ dataDir: init.dataDir }, { clock: components.clock ?? systemClock })
    const mailboxes = new Mailboxes(components, keys, init.hosts.map(hostOf))
    // signed before the node starts, so that its first invite carries it
    await mailboxes.ownRecord()
    return mailboxes
  }

  /** Starts publishing this node's record and draining its mailboxes; `engine` takes the receipts that come. */
  start (parts: { reception: Pick<Reception, 'admit' | 'store' | 'onRefused'>, engine: Pick<DeliveryEngine, 'receipt'>, trusts: (peer: string) => boolean }): void {
    const transport: ReceiveTransport = {
      register: async (host, options) => {
        await this.know(host)
        return fill(await this.client.register(host.peerId, options))
      },
      open: async (host, options) => {
        await this.know(host)
        const session = await this.client.open(host.peerId, options)
        return {
          info: fill(session.info),
          delete: async (ids) => { await session.delete(ids) },
          close: async () => { await session.close() },
          [Symbol.asyncIterator]: () => session[Symbol.asyncIterator]()
        }
      }
    }
    this.receiver = new MailboxReceiver({
      transport,
      open: async (envelope) => openEnvelope(envelope, { recipient: this.components.peerId, privateKeyFor: (id) => this.keys.privateKeyFor(id) }),
      reception: parts.reception,
      engine: parts.engine,
      directory: this.directory,
      depositor: this.depositor,
      trusts: parts.trusts,
      logger: this.components.logger,
      clock: this.clock
    }, { hosts: this.hosts })
    this.receiver.addEventListener('change', (evt) => { this.dispatchEvent(new CustomEvent('change', { detail: evt.detail })) })
    this.receiver.start()
    this.publisher.start()
    this.rotationTimer = setInterval(() => {
      this.keys.rotateIfDue().then(rotated => {
        if (!rotated) return
        this.record = undefined
        this.publisher.changed()
      }).catch(() => {})
      // a session renews the mailbox's lease only when it opens: a node online for weeks registers again
      this.receiver?.renew()
    }, ROTATION_CHECK)
    this.rotationTimer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.rotationTimer)
    this.publisher.stop()
    await this.receiver?.stop()
    await this.client.close()
  }

  /**
   * This node's mailbox hosts changed (a relay added or removed while it
   * runs): the record is signed and published anew, and the mailboxes on new
   * hosts are registered and drained.
   */
  async setHosts (hosts: Multiaddr[]): Promise<void> {
    this.hosts = hosts.map(hostOf)
    this.record = undefined
    await this.ownRecord()
    this.publisher.changed()
    await this.receiver?.setHosts(this.hosts)
  }

  /** Resolves once every mailbox was drained of what waited at start, or found unreachable (see MailboxReceiver.caughtUp). */
  async caughtUp (): Promise<void> {
    await this.receiver?.caughtUp()
  }

  /** A connection opened: to one of this node's hosts, its mailbox is drained now. */
  connected (peer: PeerId): void {
    this.receiver?.connected(peer)
  }

  /** This node's mailboxes and how each stands. */
  status (): MailboxStatus[] {
    return this.receiver?.status() ?? this.hosts.map(host => ({ host: host.peerId.toString(), connected: false, received: 0 }))
  }

  /** What this node knows of `peer`'s mailbox (looked up in the DHT if need be): its hosts, or none. */
  async mailboxOf (peer: PeerId, options: AbortOptions = {}): Promise<{ hosts: string[], seq: number } | undefined> {
    const record = await this.directory.get(peer.toString(), options)
    return record == null ? undefined : { hosts: record.hosts.map(h => h.peerId.toString()), seq: record.seq }
  }

  /** This node's signed mailbox record as last signed (signed at start, then at least hourly), for invites; none without a mailbox host. */
  signedRecord (): Uint8Array | undefined {
    return this.hosts.length === 0 ? undefined : this.record
  }

  /** This node's signed mailbox record (for invites), or none without a mailbox host. */
  async ownRecord (): Promise<Uint8Array | undefined> {
    if (this.hosts.length === 0) return undefined
    if (this.record == null || this.clock.now() - this.lastSeq >= RESIGN_AFTER) {
      // seq is the signing time, always higher than the last one's
      this.lastSeq = Math.max(this.clock.now(), this.lastSeq + 1)
      // this node reads group carriers from its mailbox (protocols/group/README.md section 2)
      this.record = await signMailboxRecord(this.components.privateKey, { seq: this.lastSeq, keys: this.keys.published(), hosts: this.hosts, reads: [GROUP_PROTOCOL] })
    }
    return this.record
  }

  private async seal (recipient: PeerId, recipientKey: Uint8Array, content: MailboxContent): Promise<Uint8Array> {
    return sealEnvelope({
      senderKey: this.components.privateKey,
      recipient,
      recipientKey,
      // the codec wants ids on their own ArrayBuffer
      content: 'receipt' in content ? { receipt: content.receipt.map(({ id, status }) => ({ id: new Uint8Array(id), status })) } : content,
      replyRecord: await this.ownRecord(),
      createdAt: this.clock.now()
    })
  }

  /** Puts a host's addresses in the peer store, so that libp2p can dial it by peer ID. */
  private async know (host: MailboxHost): Promise<void> {
    const key = host.peerId.toString()
    if (this.knownHosts.has(key) || host.addrs.length === 0) return
    await this.components.peerStore.merge(host.peerId, { multiaddrs: host.addrs })
    if (this.knownHosts.size >= KNOWN_HOSTS) this.knownHosts.clear()
    this.knownHosts.add(key)
  }
}

/** A host's MailboxInfo (uint64s as bigints) in ms and counts. */
function fill (info: { envelopes: number, bytes: bigint, maxEnvelopes: number, maxBytes: bigint, expiresAt: bigint }): MailboxStatus['fill'] & object {
  return { envelopes: info.envelopes, bytes: Number(info.bytes), maxEnvelopes: info.maxEnvelopes, maxBytes: Number(info.maxBytes), expiresAt: Number(info.expiresAt) }
}
