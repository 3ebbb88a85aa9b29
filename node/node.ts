import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { raceSignal } from 'race-signal'
import { v7 as uuidv7 } from 'uuid'
import { openDatastore } from '../common/datastore.js'
import { loadIdentity } from '../common/identity.js'
import { makePrivateFiles } from '../common/private-files.js'
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES, DEFAULT_CONTENT_TYPE, connectionPath, isMediaType, utf8Length } from '../protocols/im/index.js'
import { resolveNodeConfig } from './config.js'
import { DeliveryEngine } from './outbox/delivery.js'
import {
  ContactExistsError, DeliveryTimeoutError, EmptyMessageError, InvalidMessageError, InvalidPeerIdError, MessageRejectedError,
  MessageTooLargeError, NodeStoppedError, InvalidContactNameError, StorageFullError
} from './errors.js'
import { decodeInvite, encodeInvite, isInvite, MAX_INVITE_ADDRS } from './invite.js'
import { Inbox } from './inbox/inbox.js'
import { createNodeLibp2p } from './network/libp2p.js'
import { isMessageId } from './message-id.js'
import { isUsable, PathUpgrader, transportOf } from './network/paths.js'
import { addressesOf } from './network/peer-addresses.js'
import { Policy } from './policy.js'
import { Router } from './network/router.js'
import { Store } from './store/index.js'
import type { NodeConfig, ResolvedNodeConfig } from './config.js'
import type { NodeLibp2p } from './network/libp2p.js'
import type { OutboxEntry, StoredMessage } from './store/index.js'
import type { BlockedPeer, ContactInfo, HistoryEntry, MessageRequest, NodeStatus, OutboxItem, ParleyNodeEvents, PeerInfo, Receipt, SendOptions, StatusChange } from './types.js'
import type { Admission, InboundMessage, Path, Refusal, StoreResult } from '../protocols/im/index.js'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

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

function checkMessageId (id: unknown, field: string): asserts id is string {
  if (!isMessageId(id)) throw new InvalidMessageError(`${field} "${String(id)}" is not a message id (32 hex digits as 8-4-4-4-12, as \`history --json\` shows them)`)
}

/** How often the store's size is checked against its limit, ms, and after how many bytes stored since the last check. */
const STORAGE_CHECK_INTERVAL = 1_000
const STORAGE_CHECK_BYTES = 64 * 1024

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
    replyTo: m.replyTo,
    ...(m.request ? { request: true as const } : {})
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
  private storageTimer?: ReturnType<typeof setInterval>
  /** Body bytes stored since the store's size was last checked. */
  private storedSinceCheck = 0
  private stopped = false

  constructor (
    libp2p: NodeLibp2p,
    private readonly store: Store,
    private readonly config: ResolvedNodeConfig,
    private readonly closeDatastore: () => Promise<void>,
    private readonly policy: Policy
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
    this.checkStorage()
    this.storageTimer = setInterval(() => { this.checkStorage() }, STORAGE_CHECK_INTERVAL)
    this.storageTimer.unref?.()
    // an invite's addresses were put in the peer store when it was added; put
    // them back in case the peer store was not kept (no data dir)
    // (only the contact's own addresses, and no more than an invite may carry:
    // a contact saved by an older parley may hold any number, or another peer's)
    for (const contact of this.store.contacts()) {
      const peer = peerIdFromString(contact.peer)
      const addrs = addressesOf(peer, contact.addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })).slice(0, MAX_INVITE_ADDRS)
      if (addrs.length === 0) continue
      this.libp2p.peerStore.merge(peer, { multiaddrs: addrs })
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
    // a peer ID is that peer, whatever a contact may be called
    const asPeerId = tryPeerId(peer)
    if (asPeerId != null) return asPeerId
    const contact = this.store.contact(peer)
    if (contact != null) return peerIdFromString(contact.peer)
    throw new InvalidPeerIdError(`"${peer}" is not a valid peer ID (they look like 12D3KooW…) nor a contact name; see your contacts with \`parley contacts ls\` or add one with \`parley contacts add <name> <invite>\``)
  }

  /** A one-line invite with this node's peer ID and current addresses. */
  invite (): string {
    return encodeInvite(this.peerId, this.multiaddrs)
  }

  /**
   * Adds a contact from a peer ID or an invite; an invite's addresses go to
   * the peer store. A name already given to another peer is refused unless
   * `replace` is set (then it is repointed). Adding a contact accepts its
   * message request, if it had one.
   */
  async addContact (name: string, peerOrInvite: string, options: { replace?: boolean } = {}): Promise<ContactInfo> {
    if (typeof name !== 'string' || name.trim() === '' || name !== name.trim()) {
      throw new InvalidContactNameError('a contact name must be non-empty and not start or end with spaces')
    }
    if (tryPeerId(name) != null) {
      throw new InvalidContactNameError(`"${name}" is a peer ID; a contact name that looks like one would hide that peer. Pick another name`)
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
    const existing = this.store.contact(name)
    if (existing != null && existing.peer !== peerId.toString() && options.replace !== true) {
      throw new ContactExistsError(`the contact "${name}" is already ${existing.peer}; to point it at ${peerId.toString()} instead, replace it explicitly (\`parley contacts add --replace\`)`)
    }
    if (addrs.length > 0) {
      await this.libp2p.peerStore.merge(peerId, { multiaddrs: addrs })
    }
    this.store.addContact({ name, peer: peerId.toString(), addrs: addrs.map(a => a.toString()), createdAt: Date.now() })
    if (existing != null && existing.peer !== peerId.toString()) this.updateTrust(existing.peer)
    this.accept(peerId.toString())
    this.engine.wake(peerId.toString())
    return { name, peerId: peerId.toString(), addrs: addrs.map(a => a.toString()) }
  }

  removeContact (name: string): boolean {
    const contact = this.store.contact(name)
    if (contact == null) return false
    this.store.removeContact(name)
    this.updateTrust(contact.peer)
    return true
  }

  // ---- message requests and the block list ----

  /** Strangers whose messages wait for the user's decision, oldest first. */
  requests (): MessageRequest[] {
    return this.store.requests().map(r => ({
      peerId: r.peer,
      messages: r.messages,
      bytes: r.bytes,
      firstAt: r.firstAt,
      lastAt: r.lastAt,
      preview: r.preview.length > 200 ? `${r.preview.slice(0, 199)}…` : r.preview
    }))
  }

  /**
   * Accepts a stranger's message request: its messages become ordinary ones
   * and the stranger's quota no longer applies. With `name`, also adds a contact.
   */
  async acceptRequest (peer: PeerId | string, options: { name?: string } = {}): Promise<{ peerId: string, accepted: number, contact?: ContactInfo }> {
    const peerId = this.resolvePeer(peer).toString()
    if (this.policy.isBlocked(peerId)) throw new InvalidPeerIdError(`${peerId} is blocked; unblock it first (\`parley unblock\`)`)
    const accepted = this.accept(peerId)
    const contact = options.name == null ? undefined : await this.addContact(options.name, peerId)
    return { peerId, accepted, ...(contact == null ? {} : { contact }) }
  }

  /** Declines a message request: its messages are deleted. The stranger may write again (block it to stop that). */
  declineRequest (peer: PeerId | string): { peerId: string, deleted: number } {
    const peerId = this.resolvePeer(peer).toString()
    const deleted = this.store.deleteRequests(peerId)
    this.policy.clearRequests(peerId)
    return { peerId, deleted }
  }

  /**
   * Blocks a peer (peer ID or contact name): its waiting requests are deleted
   * and everything it sends from now on is answered BLOCKED and never shown.
   */
  block (peer: PeerId | string): { peerId: string, deleted: number } {
    const peerId = this.resolvePeer(peer)
    if (peerId.equals(this.peerId)) throw new InvalidPeerIdError('cannot block this node itself')
    const key = peerId.toString()
    const deleted = this.store.transaction(() => {
      this.store.setPeerState(key, 'blocked', Date.now())
      return this.store.deleteRequests(key)
    })
    this.policy.clearRequests(key)
    this.policy.block(key)
    this.updateTrust(key)
    return { peerId: key, deleted }
  }

  /** Lifts a block; false if the peer was not blocked. */
  unblock (peer: PeerId | string): boolean {
    const key = this.resolvePeer(peer).toString()
    if (!this.policy.isBlocked(key)) return false
    this.store.setPeerState(key, undefined, Date.now())
    this.policy.block(key, false)
    this.updateTrust(key)
    return true
  }

  blocked (): BlockedPeer[] {
    return this.store.peerStates().filter(p => p.state === 'blocked').map(p => {
      const name = this.store.contactsOf(p.peer)[0]?.name
      return { peerId: p.peer, since: p.since, ...(name == null ? {} : { name }) }
    })
  }

  /** The peer may write without a quota: its waiting requests become ordinary messages; how many. */
  private accept (peer: string): number {
    if (this.policy.isBlocked(peer)) return 0
    const accepted = this.store.transaction(() => {
      this.store.setPeerState(peer, 'accepted', Date.now())
      return this.store.acceptRequests(peer)
    })
    this.policy.clearRequests(peer)
    this.updateTrust(peer)
    return accepted
  }

  private updateTrust (peer: string): void {
    this.policy.trust(peer, isTrusted(this.store, peer))
  }

  /** Reads the store's size and tells the policy whether it is full; the size. */
  private checkStorage (): number {
    this.storedSinceCheck = 0
    const used = this.store.usedBytes()
    const full = used >= this.config.limits.maxStoreBytes
    if (full !== this.policy.full) {
      this.log[full ? 'error' : 'trace'](full ? 'message store full (limit %d bytes): inbound messages are answered RATE_LIMITED' : 'message store below its limit (%d bytes) again', this.config.limits.maxStoreBytes)
      this.policy.setStoreFull(full)
    }
    return used
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
      admit: (peer) => this.admit(peer),
      store: async (message) => this.receive(message),
      onRefused: (refusal) => { this.refused(refusal) }
    }
  }

  private admit (peer: PeerId): Admission {
    const verdict = this.policy.admit(peer.toString())
    if (verdict == null) return { status: 'accept' }
    return verdict.status === 'rate-limit' ? { status: 'rate-limit', retryAfterMs: verdict.retryAfterMs } : { status: 'block' }
  }

  /** Stores what the policy lets in: a stranger's message as a request, up to its quota; the rest is answered RATE_LIMITED. */
  private async receive (message: InboundMessage): Promise<StoreResult> {
    const peer = message.from.toString()
    const bytes = utf8Length(message.body)
    const verdict = this.policy.check(peer, bytes)
    if (verdict.status !== 'accept') {
      // blocked since admission: it waits like a rate-limited one, and is answered BLOCKED next time
      return { status: 'rate-limited', retryAfterMs: verdict.status === 'rate-limit' ? verdict.retryAfterMs : this.config.limits.retryAfterMs }
    }
    let result: Awaited<ReturnType<Inbox['receive']>>
    try {
      result = await this.inbox.receive(message, { request: verdict.request, maxHeld: this.config.limits.maxHeldPerPeer })
    } finally {
      this.policy.settle(peer, bytes, verdict.request, result! === 'stored')
    }
    if (result === 'stored') {
      this.storedSinceCheck += bytes
      if (this.storedSinceCheck >= STORAGE_CHECK_BYTES) this.checkStorage()
    }
    // too many held for an earlier seq: the missing one must still get through, so the peer is not told to wait as a whole
    if (result === 'held-full') return { status: 'rate-limited', retryAfterMs: this.config.limits.retryAfterMs }
    return result
  }

  private refused (refusal: Refusal): void {
    // a blocked peer's messages are not even recorded as filling their seq
    if (this.policy.isBlocked(refusal.from.toString())) return
    this.inbox.refused(refusal)
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
    if (this.policy.full) {
      throw new StorageFullError(`the message store is at its limit (${this.config.limits.maxStoreBytes} bytes, limits.maxStoreBytes): free room or raise the limit to send`)
    }
    if (typeof body !== 'string' || body.length === 0) {
      throw new EmptyMessageError('the message is empty; write some text to send')
    }
    if (!body.isWellFormed()) {
      throw new InvalidMessageError('the message has a lone UTF-16 surrogate (half of an emoji?): it is not text that UTF-8 can carry')
    }
    const size = utf8Length(body)
    if (size > MAX_BODY_BYTES) {
      throw new MessageTooLargeError(`the message is ${size} bytes of UTF-8, over the ${MAX_BODY_BYTES}-byte limit; split it into smaller messages`)
    }
    const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE
    if (utf8Length(contentType) > MAX_CONTENT_TYPE_BYTES) {
      throw new MessageTooLargeError(`the content type is over the ${MAX_CONTENT_TYPE_BYTES}-byte limit`)
    }
    if (!isMediaType(contentType)) {
      throw new InvalidMessageError(`the content type "${contentType}" is not a media type (type/subtype, printable ASCII, e.g. text/markdown); the recipient would refuse it`)
    }
    if (options.replyTo != null) {
      checkMessageId(options.replyTo, 'replyTo')
    }

    // writing to a peer accepts it, as answering a message request does
    const key = to.toString()
    if (!this.policy.isTrusted(key) && !this.policy.isBlocked(key)) this.accept(key)
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
          replyTo: m.replyTo,
          ...(m.request ? { request: true as const } : {})
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
    checkMessageId(id, 'id')
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
      outbox: this.store.outboxSize(),
      storage: { usedBytes: this.checkStorage(), limitBytes: this.config.limits.maxStoreBytes, full: this.policy.full },
      requests: this.policy.requestUsage().peers,
      blocked: this.policy.blockedCount
    }
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.storageTimer)
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

function tryPeerId (text: string): PeerId | undefined {
  try {
    return peerIdFromString(text)
  } catch {
    return undefined
  }
}

/** Trusted: a contact, or a peer whose request was accepted (or whom this node wrote to first), and not blocked. */
function isTrusted (store: Store, peer: string): boolean {
  const state = store.peerState(peer)
  return state !== 'blocked' && (state === 'accepted' || store.contactsOf(peer).length > 0)
}

/** The policy as the store left it: the block list, who is trusted, what strangers' requests take. */
function loadPolicy (store: Store, config: ResolvedNodeConfig): Policy {
  const policy = new Policy(config.limits)
  const peers = new Set([...store.peerStates().map(p => p.peer), ...store.contacts().map(c => c.peer)])
  for (const peer of peers) {
    policy.block(peer, store.peerState(peer) === 'blocked')
    policy.trust(peer, isTrusted(store, peer))
  }
  policy.loadRequests(store.requests())
  return policy
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
    if (resolved.dataDir != null) {
      // the history is nobody else's, whatever mode the data dir had before
      const db = join(resolved.dataDir, STORE_FILE)
      await makePrivateFiles([db, `${db}-wal`, `${db}-shm`, `${db}-journal`])
    }
    const policy = loadPolicy(store, resolved)
    const relayPeers = new Set(resolved.relays.map(r => r.getComponents().filter(c => c.name === 'p2p').at(-1)?.value))
    // libp2p starts serving /im before the node object exists; until then, no ack
    // is sent and the sender retries
    const started: { node?: ParleyNode } = {}
    const libp2p = await createNodeLibp2p(resolved, privateKey, datastore, {
      admit: (peer, options) => started.node?.handlers().admit?.(peer, options) ?? { status: 'rate-limit', retryAfterMs: 1_000 },
      // the connection guard's exemptions: the relays this node reserves on, contacts and accepted peers
      trust: {
        isTrusted: (peer) => {
          const key = peer.toString()
          return relayPeers.has(key) || policy.isTrusted(key)
        },
        isDenied: (peer) => policy.isDenied(peer.toString())
      },
      store: async (message, options) => {
        if (started.node == null) throw new Error('the node is still starting')
        return started.node.handlers().store(message, options)
      },
      onRefused: (refusal) => started.node?.handlers().onRefused?.(refusal)
    })
    const node = new ParleyNode(libp2p, store, resolved, close, policy)
    policy.onAbuse = (peer) => {
      // it kept sending while told to wait: drop its connections (a parley sender
      // waits and comes back), and refuse strangers from its IP for as long as it
      // is refused itself, or it would come back under a fresh identity
      const peerId = peerIdFromString(peer)
      const until = Date.now() + resolved.limits.abusePenaltyMs
      for (const connection of libp2p.getConnections(peerId)) libp2p.services.connectionGuard.penalize(connection.remoteAddr, until)
      libp2p.hangUp(peerId).catch(() => {})
    }
    started.node = node
    node.start()
    return node
  } catch (err) {
    store?.close()
    await close()
    throw err
  }
}
