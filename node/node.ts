import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { raceSignal } from 'race-signal'
import { parse as parseUuid, v7 as uuidv7 } from 'uuid'
import { openDatastore } from '../common/datastore.js'
import { loadIdentity } from '../common/identity.js'
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES, DEFAULT_CONTENT_TYPE, ID_BYTES, connectionPath, utf8Length } from '../protocols/im/index.js'
import { resolveNodeConfig } from './config.js'
import { DeliveryEngine } from './delivery.js'
import {
  DeliveryTimeoutError, EmptyMessageError, InvalidMessageError, InvalidPeerIdError, MessageRejectedError,
  MessageTooLargeError, NodeStoppedError, InvalidContactNameError
} from './errors.js'
import { decodeInvite, encodeInvite, isInvite } from './invite.js'
import { Inbox } from './inbox.js'
import { createNodeLibp2p } from './libp2p.js'
import { isUsable, PathUpgrader, transportOf } from './paths.js'
import { Router } from './router.js'
import { Store } from './store/index.js'
import type { NodeConfig, ResolvedNodeConfig } from './config.js'
import type { StatusChange } from './delivery.js'
import type { NodeLibp2p } from './libp2p.js'
import type { PathChange } from './paths.js'
import type { RelayReservationStatus } from './reservations.js'
import type { OutboxEntry, StoredMessage } from './store/index.js'
import type { Path } from '../protocols/im/index.js'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { AbortOptions, Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** A message as the user receives it. */
export interface ReceivedMessage {
  /** UUID of the message, as the sender chose it. */
  id: string
  /** Peer ID of the sender: always the authenticated peer of the connection. */
  from: string
  seq: number
  body: string
  contentType: string
  /** Sender's clock, ms since the Unix epoch. */
  sentAt: number
  /** This node's clock when it stored the message. */
  receivedAt: number
  path: Path
  replyTo?: string
}

/** A message of a conversation, in either direction, as `history` lists it. */
export interface HistoryEntry {
  id: string
  from: string
  to: string
  direction: 'in' | 'out'
  seq: number
  body: string
  contentType: string
  sentAt: number
  receivedAt?: number
  /** out: queued | sending | delivered | failed; in: received */
  status: 'queued' | 'sending' | 'delivered' | 'failed' | 'received'
  path?: Path
  reason?: string
  replyTo?: string
}

/** An outbound message still waiting for its ack. */
export interface OutboxItem extends HistoryEntry {
  attempts: number
  nextAttemptAt: number
  lastError?: string
}

export interface SendOptions extends AbortOptions {
  /** @default 'text/plain' */
  contentType?: string
  /** UUID of an earlier message in the conversation this one answers. */
  replyTo?: string
  /**
   * Stop waiting for the ack after this many ms. The message stays queued and
   * is still delivered later. @default the node's `sendTimeout`
   */
  timeout?: number
}

/** What `send` resolves with once the recipient acknowledged the message. */
export interface Receipt {
  id: string
  status: 'delivered'
  path: Path
}

export interface NodeStatus {
  peerId: string
  addrs: string[]
  relays: RelayReservationStatus[]
  connections: number
  dhtPeers: number
  outbox: number
}

/** A contact: a name for a peer, and the addresses its invite gave. */
export interface ContactInfo {
  name: string
  peerId: string
  addrs: string[]
}

/** One connected peer and how it is reached. */
export interface PeerInfo {
  peerId: string
  path: Path
  transport: string
  remoteAddr: string
  /** Round-trip time of the last heartbeat, in ms, once measured. */
  rtt?: number
}

export interface ParleyNodeEvents {
  message: CustomEvent<ReceivedMessage>
  'message:status': CustomEvent<StatusChange>
  'path:change': CustomEvent<PathChange>
}

function parsePeer (peer: PeerId | string): PeerId {
  if (typeof peer !== 'string') {
    return peer
  }
  try {
    return peerIdFromString(peer)
  } catch {
    throw new InvalidPeerIdError(`"${peer}" is not a valid peer ID; a peer ID looks like 12D3KooW… (ask your contact for theirs with \`parley id\`)`)
  }
}

function checkMessageId (id: string, field: string): void {
  try {
    if (parseUuid(id).byteLength === ID_BYTES) return
  } catch {}
  throw new InvalidMessageError(`${field} "${id}" is not a message id (a UUID)`)
}

function toHistoryEntry (self: string, m: StoredMessage): HistoryEntry {
  return {
    id: m.id,
    from: m.direction === 'in' ? m.peer : self,
    to: m.direction === 'in' ? self : m.peer,
    direction: m.direction,
    seq: m.seq,
    body: m.body,
    contentType: m.contentType,
    sentAt: m.sentAt,
    receivedAt: m.receivedAt,
    status: m.direction === 'in' ? 'received' : m.status as HistoryEntry['status'],
    path: m.path,
    reason: m.reason,
    replyTo: m.replyTo
  }
}

/**
 * A parley node: sends messages to peers by peer ID through a persistent
 * outbox, picks the path (direct or relayed) by itself and reports which, and
 * emits the messages it receives once each, in each conversation's order.
 */
export class ParleyNode extends TypedEventEmitter<ParleyNodeEvents> {
  readonly peerId: PeerId
  readonly libp2p: NodeLibp2p
  private readonly log: Logger
  private readonly router: Router
  private readonly paths: PathUpgrader
  private readonly engine: DeliveryEngine
  private readonly inbox: Inbox
  private readonly waiting = new Map<string, PromiseWithResolvers<Receipt>>()
  private stopped = false

  constructor (
    libp2p: NodeLibp2p,
    private readonly store: Store,
    private readonly config: ResolvedNodeConfig,
    private readonly closeDatastore: () => Promise<void>
  ) {
    super()
    this.libp2p = libp2p
    this.peerId = libp2p.peerId
    this.log = libp2p.logger.forComponent('parley:node')
    this.router = new Router(libp2p, libp2p.logger.forComponent('parley:router'))
    this.paths = new PathUpgrader(libp2p, libp2p.logger.forComponent('parley:paths'))
    this.inbox = new Inbox(store, (messages) => { this.present(messages) }, config.gapTimeout)
    this.engine = new DeliveryEngine(store, this.router, () => libp2p.services.im, libp2p.logger.forComponent('parley:delivery'), config.retry)

    this.paths.addEventListener('path:change', (evt) => {
      this.dispatchEvent(new CustomEvent('path:change', { detail: evt.detail }))
    })
    this.engine.addEventListener('message:status', (evt) => { this.onStatus(evt.detail) })
    // a new connection to a peer, or a change in our own reachability: retry at once
    libp2p.addEventListener('connection:open', (evt) => { this.engine.wake(evt.detail.remotePeer.toString()) })
    libp2p.addEventListener('self:peer:update', () => { this.engine.wake() })
  }

  /** Starts receiving and the outbox (called by `createNode`). */
  start (): void {
    // an invite's addresses were put in the peer store when it was added; put
    // them back in case the peer store was not kept (no data dir)
    for (const contact of this.store.contacts()) {
      if (contact.addrs.length === 0) continue
      this.libp2p.peerStore.merge(peerIdFromString(contact.peer), { multiaddrs: contact.addrs.map(a => multiaddr(a)) })
        .catch(err => { this.log('could not restore addresses of contact %s - %e', contact.name, err) })
    }
    this.paths.start()
    this.inbox.start()
    this.engine.start()
  }

  /** The addresses this node can be reached at, relay circuit addresses included. */
  get multiaddrs (): Multiaddr[] {
    return this.libp2p.getMultiaddrs()
  }

  /**
   * A peer ID from a peer ID string or a contact name.
   *
   * @throws InvalidPeerIdError when it is neither
   */
  resolvePeer (peer: PeerId | string): PeerId {
    if (typeof peer !== 'string') return peer
    const contact = this.store.contact(peer)
    if (contact != null) return peerIdFromString(contact.peer)
    try {
      return peerIdFromString(peer)
    } catch {
      throw new InvalidPeerIdError(`"${peer}" is not a valid peer ID (they look like 12D3KooW…) nor a contact name; see your contacts with \`parley contacts ls\` or add one with \`parley contacts add <name> <invite>\``)
    }
  }

  /** A one-line invite with this node's peer ID and current addresses. */
  invite (): string {
    return encodeInvite(this.peerId, this.multiaddrs)
  }

  /** Adds (or replaces) a contact from a peer ID or an invite; an invite's addresses go to the peer store. */
  async addContact (name: string, peerOrInvite: string): Promise<ContactInfo> {
    if (name.trim() === '' || name !== name.trim()) {
      throw new InvalidContactNameError('a contact name must be non-empty and not start or end with spaces')
    }
    let peerId: PeerId
    let addrs: Multiaddr[] = []
    if (isInvite(peerOrInvite)) {
      ({ peerId, addrs } = decodeInvite(peerOrInvite))
    } else {
      peerId = parsePeer(peerOrInvite)
    }
    if (peerId.equals(this.peerId)) {
      throw new InvalidPeerIdError('that is this node\'s own peer ID; add your contact\'s ID or invite')
    }
    if (addrs.length > 0) {
      await this.libp2p.peerStore.merge(peerId, { multiaddrs: addrs })
    }
    this.store.addContact({ name, peer: peerId.toString(), addrs: addrs.map(a => a.toString()), createdAt: Date.now() })
    this.engine.wake(peerId.toString())
    return { name, peerId: peerId.toString(), addrs: addrs.map(a => a.toString()) }
  }

  removeContact (name: string): boolean {
    return this.store.removeContact(name)
  }

  contacts (): ContactInfo[] {
    return this.store.contacts().map(c => ({ name: c.name, peerId: c.peer, addrs: c.addrs }))
  }

  /** Connected peers, each with its best path. */
  peers (): PeerInfo[] {
    const byPeer = new Map<string, PeerInfo>()
    for (const connection of this.libp2p.getConnections()) {
      if (!isUsable(connection)) continue
      const key = connection.remotePeer.toString()
      const info: PeerInfo = {
        peerId: key,
        path: connectionPath(connection),
        transport: transportOf(connection),
        remoteAddr: connection.remoteAddr.toString(),
        rtt: connection.rtt
      }
      const known = byPeer.get(key)
      if (known == null || (known.path === 'relayed' && info.path === 'direct')) byPeer.set(key, info)
    }
    return [...byPeer.values()]
  }

  /** The best open path to a peer right now, if connected. */
  pathTo (peer: PeerId | string): Path | undefined {
    return this.paths.pathTo(parsePeer(peer))
  }

  /** Receiving side of the /im service (see createNode). */
  handlers (): Parameters<typeof createNodeLibp2p>[3] {
    return {
      store: async (message) => this.inbox.receive(message),
      onRefused: (refusal) => { this.inbox.refused(refusal) }
    }
  }

  /**
   * Queues `body` for `peer` (durably, before anything goes on the wire) and
   * resolves once the recipient acknowledged it, with the path the
   * acknowledged copy took. If `signal` aborts or `timeout` passes first, the
   * promise rejects with DeliveryTimeoutError but the message stays queued and
   * is still delivered later.
   */
  async send (peer: PeerId | string, body: string, options: SendOptions = {}): Promise<Receipt> {
    const id = this.queue(peer, body, options)
    return this.waitFor(id, options)
  }

  /** Queues a message and returns its id at once; `message:status` events follow it. */
  queue (peer: PeerId | string, body: string, options: Pick<SendOptions, 'contentType' | 'replyTo'> = {}): string {
    if (this.stopped) {
      throw new NodeStoppedError('the node is stopped; start a new one to send')
    }
    const to = this.resolvePeer(peer)
    if (to.equals(this.peerId)) {
      throw new InvalidPeerIdError('cannot send a message to this node itself; give the recipient\'s peer ID')
    }
    if (typeof body !== 'string' || body.length === 0) {
      throw new EmptyMessageError('the message is empty; write some text to send')
    }
    const size = utf8Length(body)
    if (size > MAX_BODY_BYTES) {
      throw new MessageTooLargeError(`the message is ${size} bytes of UTF-8, over the ${MAX_BODY_BYTES}-byte limit; split it into smaller messages`)
    }
    const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE
    if (utf8Length(contentType) > MAX_CONTENT_TYPE_BYTES) {
      throw new MessageTooLargeError(`the content type is over the ${MAX_CONTENT_TYPE_BYTES}-byte limit`)
    }
    if (options.replyTo != null) {
      checkMessageId(options.replyTo, 'replyTo')
    }

    const message = this.store.enqueue({
      peer: to.toString(),
      id: uuidv7(),
      body,
      contentType,
      replyTo: options.replyTo,
      sentAt: Date.now()
    })
    this.onStatus({ id: message.id, peer: message.peer, seq: message.seq, status: 'queued' })
    this.engine.run(message.peer)
    return message.id
  }

  /** Waits for a queued message's ack (see `send` for what a timeout means). */
  async waitFor (id: string, options: Pick<SendOptions, 'signal' | 'timeout'>): Promise<Receipt> {
    const current = this.store.getMessage(id)
    if (current?.status === 'delivered') {
      return { id, status: 'delivered', path: current.path ?? 'direct' }
    }
    let waiter = this.waiting.get(id)
    if (waiter == null) {
      waiter = Promise.withResolvers<Receipt>()
      waiter.promise.catch(() => {})
      this.waiting.set(id, waiter)
    }
    const timeout = options.timeout ?? this.config.sendTimeout
    const signal = AbortSignal.any([AbortSignal.timeout(timeout), ...(options.signal == null ? [] : [options.signal])])
    try {
      return await raceSignal(waiter.promise, signal)
    } catch (err: any) {
      if (err.name === 'MessageRejectedError' || err.name === 'NodeStoppedError') throw err
      const lastError = this.store.outbox().find(e => e.id === id)?.lastError
      throw new DeliveryTimeoutError(`message ${id} is not acknowledged yet${options.signal?.aborted === true ? ' (the wait was aborted)' : ` after ${timeout} ms`}; it stays queued and will be delivered when the peer is reachable${lastError == null ? '' : ` (last attempt: ${lastError})`}`)
    }
  }

  private onStatus (change: StatusChange): void {
    const waiter = this.waiting.get(change.id)
    if (waiter != null && change.status === 'delivered') {
      this.waiting.delete(change.id)
      waiter.resolve({ id: change.id, status: 'delivered', path: change.path ?? 'direct' })
    } else if (waiter != null && change.status === 'failed') {
      this.waiting.delete(change.id)
      waiter.reject(new MessageRejectedError(`the recipient refused message ${change.id}: ${change.reason ?? 'no reason given'}`, change.reason ?? 'failed'))
    }
    this.dispatchEvent(new CustomEvent('message:status', { detail: change }))
  }

  private present (messages: StoredMessage[]): void {
    for (const m of messages) {
      this.dispatchEvent(new CustomEvent('message', {
        detail: {
          id: m.id,
          from: m.peer,
          seq: m.seq,
          body: m.body,
          contentType: m.contentType,
          sentAt: m.sentAt,
          receivedAt: m.receivedAt ?? m.createdAt,
          path: m.path ?? 'direct',
          replyTo: m.replyTo
        }
      }))
    }
  }

  /** The conversation with `peer`, oldest first: up to `limit` messages written before `before` (ms). */
  history (peer: PeerId | string, options: { limit?: number, before?: number } = {}): HistoryEntry[] {
    const self = this.peerId.toString()
    return this.store.history(this.resolvePeer(peer).toString(), options).map(m => toHistoryEntry(self, m))
  }

  /** Messages not yet delivered or failed, oldest first. */
  outbox (): OutboxItem[] {
    const self = this.peerId.toString()
    return this.store.outbox().map((e: OutboxEntry) => ({
      ...toHistoryEntry(self, e),
      attempts: e.attempts,
      nextAttemptAt: e.nextAttemptAt,
      lastError: e.lastError
    }))
  }

  /** A message by id, sent or received. */
  getMessage (id: string): HistoryEntry | undefined {
    const m = this.store.getMessage(id)
    return m == null ? undefined : toHistoryEntry(this.peerId.toString(), m)
  }

  status (): NodeStatus {
    return {
      peerId: this.peerId.toString(),
      addrs: this.multiaddrs.map(a => a.toString()),
      relays: this.libp2p.services.reservations.status(),
      connections: this.libp2p.getConnections().length,
      dhtPeers: (this.libp2p.services.dht as SingleKadDHT).routingTable.size,
      outbox: this.store.outboxSize()
    }
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.engine.stop()
    this.inbox.stop()
    this.paths.stop()
    for (const waiter of this.waiting.values()) {
      waiter.reject(new NodeStoppedError('the node stopped before the message was acknowledged; it stays queued for the next start'))
    }
    this.waiting.clear()
    await this.libp2p.stop()
    this.store.close()
    await this.closeDatastore()
  }
}

/** Name of the message store inside a data dir. */
export const STORE_FILE = 'messages.db'

/** Starts a parley node. Without `dataDir` everything is in memory. */
export async function createNode (config: NodeConfig = {}): Promise<ParleyNode> {
  const resolved = resolveNodeConfig(config)
  const privateKey = await loadIdentity(resolved.dataDir)
  // the datastore's lock also keeps a second process off this data dir
  const { datastore, close } = await openDatastore(resolved.dataDir)
  let store: Store | undefined
  try {
    store = new Store(resolved.dataDir == null ? undefined : join(resolved.dataDir, STORE_FILE))
    // libp2p starts serving /im before the node object exists; until then, no ack
    // is sent and the sender retries
    const started: { node?: ParleyNode } = {}
    const libp2p = await createNodeLibp2p(resolved, privateKey, datastore, {
      store: async (message, options) => {
        if (started.node == null) throw new Error('the node is still starting')
        return started.node.handlers().store(message, options)
      },
      onRefused: (refusal) => started.node?.handlers().onRefused?.(refusal)
    })
    const node = new ParleyNode(libp2p, store, resolved, close)
    started.node = node
    node.start()
    return node
  } catch (err) {
    store?.close()
    await close()
    throw err
  }
}
