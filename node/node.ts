import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { systemClock } from '../common/clock.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { raceSignal } from 'race-signal'
import { openDatastore } from '../common/datastore.js'
import { loadIdentity } from '../common/identity.js'
import { makePrivateFiles } from '../common/private-files.js'
import { defaultLogger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES, DEFAULT_CONTENT_TYPE, connectionPath, isMediaType, utf8Length } from '../protocols/im/index.js'
import { resolveNodeConfig } from './config.js'
import { CANCELLED_REASON, DeliveryEngine, EXPIRED_REASON_PREFIX } from './outbox/delivery.js'
import {
  ContactExistsError, DeliveryTimeoutError, EmptyMessageError, InvalidMessageError, InvalidPeerIdError, MessageRejectedError,
  MessageTooLargeError, NodeStoppedError, InvalidContactNameError, StorageFullError
} from './errors.js'
import { MessageCancelledError, MessageExpiredError, MessageNotCancellableError, UnknownContactError, UnknownMessageError } from './errors.js'
import { encodeInvite, isInvite, MAX_INVITE_ADDRS, readInvite } from './invite.js'
import { Inbox } from './inbox/inbox.js'
import { createNodeLibp2p } from './network/libp2p.js'
import { isMessageId, newMessageId } from './message-id.js'
import { isUsable, PathUpgrader, pathUpgraderComponents, remoteAddrOf, transportOf } from './network/paths.js'
import { addressesOf } from './network/peer-addresses.js'
import { Policy } from './policy.js'
import { computeReachability } from './reachability.js'
import { Mailboxes } from './mailbox/index.js'
import { Groups } from './group/index.js'
import { Reception } from './reception.js'
import { StorageMonitor } from './storage-monitor.js'
import { Router, routerComponents } from './network/router.js'
import { InvalidRelayAddressError } from './network/reservations.js'
import { relayPeerOf } from '../common/relay-link.js'
import { peerIdOf } from '../common/peer-ids.js'
import { PREVIEW_CHARS, Store } from './store/index.js'
import { FileTransfers } from './files/transfers.js'
import type { FileInfo, SendFileOptions } from './files/transfers.js'
import type { NodeConfig, ResolvedNodeConfig } from './config.js'
import type { NodeLibp2p } from './network/libp2p.js'
import type { OutboxEntry, StoredMessage } from './store/index.js'
import type { AcceptedRequest, BlockedPeer, ContactInfo, Conversation, DeletedRequests, HistoryEntry, MessageRequest, NodeStatus, OutboxItem, ParleyNodeEvents, PeerInfo, Reachability, ReadMark, Receipt, SendOptions, StatusChange } from './types.js'
import type { RelayStatus } from './types.js'
import type { GroupConversation, GroupInfo, GroupMessage, GroupRecipientStatus, GroupSendResult } from './group/types.js'
import type { Path } from '../protocols/im/index.js'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { AbortOptions, Logger, PeerId } from '@libp2p/interface'
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

/** How long a group write waits at most for this node's mailboxes to be drained first (see caughtUpForGroups). */
const GROUP_CATCH_UP_WAIT = 10_000

/**
 * A parley node: sends messages to peers by peer ID through a persistent
 * outbox, picks the path (direct or relayed) by itself and reports which, and
 * emits the messages it receives once each, in each conversation's order.
 */
export class ParleyNode extends TypedEventEmitter<ParleyNodeEvents> {
  readonly peerId: PeerId
  readonly libp2p: NodeLibp2p
  private readonly log: Logger
  private readonly store: Store
  private readonly config: ResolvedNodeConfig
  private readonly policy: Policy
  private readonly storage: StorageMonitor
  private readonly paths: PathUpgrader
  private readonly engine: DeliveryEngine
  private readonly inbox: Inbox
  private readonly reception: Reception
  private readonly mailboxes: Mailboxes
  private readonly groupsOf: Groups
  /** sendGroup's waits, by carrier id: each settles with where the carrier stands. */
  private readonly carrierWaits = new Map<string, { peer: string, settle: (status: GroupRecipientStatus) => void }>()
  private readonly fileTransfers: FileTransfers
  private readonly closeDatastore: () => Promise<void>
  private readonly waiting = new Map<string, PromiseWithResolvers<Receipt>>()
  private stopped = false
  private lastReachability = ''
  /** Peers this node has shared a group with: their trust is looked at again when a membership changes. */
  private readonly knownGroupPeers = new Set<string>()

  /** Takes parts `createNode` built and wired; use `createNode`. */
  constructor (parts: NodeParts) {
    super()
    this.libp2p = parts.libp2p
    this.peerId = parts.libp2p.peerId
    this.log = parts.libp2p.logger.forComponent('parley:node')
    this.store = parts.store
    this.config = parts.config
    this.policy = parts.policy
    this.storage = parts.storage
    this.paths = parts.paths
    this.engine = parts.engine
    this.inbox = parts.inbox
    this.reception = parts.reception
    this.mailboxes = parts.mailboxes
    this.groupsOf = parts.groups
    this.closeDatastore = parts.closeDatastore
    this.groupsOf.addEventListener('group:message', (evt) => { this.dispatchEvent(new CustomEvent('group:message', { detail: evt.detail })) })
    this.groupsOf.addEventListener('group:change', (evt) => {
      // sharing a group that this node or one of its contacts stands behind trusts its members (their
      // carriers are no message requests); leaving or a removal undoes it
      for (const peer of new Set([...evt.detail.members, ...this.knownGroupPeers])) if (peer !== this.peerId.toString()) this.trustOne(peer)
      for (const peer of evt.detail.members) this.knownGroupPeers.add(peer)
      this.dispatchEvent(new CustomEvent('group:change', { detail: evt.detail }))
    })
    this.fileTransfers = parts.files
    this.wireFiles()

    this.paths.addEventListener('path:change', (evt) => {
      this.dispatchEvent(new CustomEvent('path:change', { detail: evt.detail }))
    })
    this.engine.addEventListener('message:status', (evt) => { this.onStatus(evt.detail) })
    this.inbox.addEventListener('presented', (evt) => { this.present(evt.detail) })
    // a new connection to a peer, or a change in our own reachability: retry at once
    this.libp2p.addEventListener('connection:open', (evt) => { this.engine.wake(evt.detail.remotePeer.toString()) })
    this.mailboxes.addEventListener('change', (evt) => { this.dispatchEvent(new CustomEvent('mailbox:change', { detail: evt.detail })) })
    // a connection to one of our mailbox hosts: fetch what waits there now
    this.libp2p.addEventListener('connection:open', (evt) => { this.mailboxes.connected(evt.detail.remotePeer) })
    this.libp2p.addEventListener('self:peer:update', () => { this.engine.wake() })
    this.libp2p.addEventListener('self:peer:update', () => { this.checkReachability() })
    this.libp2p.services.reservations.addEventListener('change', () => { this.checkReachability() })
  }

  /** Starts the node's own parts once libp2p runs (called by `createNode`, once). */
  start (): void {
    for (const peer of this.groupsOf.coMembers()) {
      this.knownGroupPeers.add(peer)
      this.trustOne(peer)
    }
    this.storage.start()
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
    this.mailboxes.start({ reception: this.reception, engine: this.engine, trusts: (peer) => this.policy.isTrusted(peer) })
    this.lastReachability = JSON.stringify(this.reachability())
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
    if (contact != null) return peerIdOf(contact.peer)
    throw new InvalidPeerIdError(`"${peer}" is not a valid peer ID (they look like 12D3KooW…) nor a contact name; see your contacts with \`parley contacts ls\` or add one with \`parley contacts add <name> <invite>\``)
  }

  /**
   * A one-line invite with this node's peer ID, current addresses and signed
   * mailbox record (so that whoever adds it can write even while this node is
   * offline, without finding the record in the DHT).
   */
  invite (): string {
    return encodeInvite(this.peerId, this.multiaddrs, { mailboxRecord: this.mailboxes.signedRecord() })
  }

  /**
   * Adds a contact from a peer ID or an invite; an invite's addresses go to
   * the peer store. A name already given to another peer is refused unless
   * `replace` is set (then it is repointed). Adding a contact accepts its
   * message request, if it had one.
   */
  async addContact (name: string, peerOrInvite: string, options: { replace?: boolean } = {}): Promise<ContactInfo> {
    checkContactName(name)
    let peerId: PeerId
    let addrs: Multiaddr[] = []
    let mailboxRecord: Uint8Array | undefined
    if (isInvite(peerOrInvite)) {
      let mailbox
      ({ peerId, addrs, mailbox } = await readInvite(peerOrInvite))
      mailboxRecord = mailbox?.bytes
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
    // verified by readInvite; kept unless a newer one is known
    if (mailboxRecord != null) await this.mailboxes.directory.learn(peerId.toString(), mailboxRecord).catch(err => { this.log('the mailbox record of invite of %p not kept - %e', peerId, err) })
    this.store.addContact({ name, peer: peerId.toString(), addrs: addrs.map(a => a.toString()), createdAt: Date.now() })
    if (existing != null && existing.peer !== peerId.toString()) this.updateTrust(existing.peer)
    this.accept(peerId.toString())
    this.engine.wake(peerId.toString())
    return { name, peerId: peerId.toString(), addrs: addrs.map(a => a.toString()) }
  }

  /**
   * Gives a contact another name: the same peer, its addresses kept. A name
   * that is another contact's already is refused (ContactExistsError), and
   * so is a name nobody has (UnknownContactError).
   */
  renameContact (name: string, newName: string): ContactInfo {
    checkContactName(newName)
    const contact = this.store.contact(name)
    if (contact == null) throw new UnknownContactError(`no contact named "${name}"`)
    if (newName !== name) {
      const taken = this.store.contact(newName)
      if (taken != null) throw new ContactExistsError(`the name "${newName}" is already the contact ${taken.peer}; remove or rename that one first`)
      this.store.renameContact(name, newName)
    }
    return { name: newName, peerId: contact.peer, addrs: contact.addrs }
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
  async acceptRequest (peer: PeerId | string, options: { name?: string } = {}): Promise<AcceptedRequest> {
    const peerId = this.resolvePeer(peer).toString()
    if (this.policy.isBlocked(peerId)) throw new InvalidPeerIdError(`${peerId} is blocked; unblock it first (\`parley unblock\`)`)
    const accepted = this.accept(peerId)
    const contact = options.name == null ? undefined : await this.addContact(options.name, peerId)
    return { peerId, accepted, ...(contact == null ? {} : { contact }) }
  }

  /** Declines a message request: its messages are deleted. The stranger may write again (block it to stop that). */
  declineRequest (peer: PeerId | string): DeletedRequests {
    const peerId = this.resolvePeer(peer).toString()
    const deleted = this.store.deleteRequests(peerId)
    this.policy.clearRequests(peerId)
    return { peerId, deleted }
  }

  /**
   * Blocks a peer (peer ID or contact name): its waiting requests are deleted
   * and everything it sends from now on is answered BLOCKED and never shown.
   */
  block (peer: PeerId | string): DeletedRequests {
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
    this.trustOne(peer)
    // a contact added, accepted or blocked may be what stands behind a group: its members' trust follows
    for (const member of this.knownGroupPeers) if (member !== peer) this.trustOne(member)
  }

  private trustOne (peer: string): void {
    this.policy.trust(peer, isTrusted(this.store, peer) ||
      (this.store.peerState(peer) !== 'blocked' && this.groupsOf.sharesVouchedGroup(peer, (backer) => isTrusted(this.store, backer))))
  }

  contacts (): ContactInfo[] {
    return this.store.contacts().map(c => ({ name: c.name, peerId: c.peer, addrs: c.addrs }))
  }

  /** Connected peers, each with its best path. */
  peers (): PeerInfo[] {
    const byPeer = new Map<string, PeerInfo>()
    // the relays this node reserves on, told apart from the people it talks to
    const relayIds = new Set(this.libp2p.services.connectionGuard.trustedRelays())
    for (const connection of this.libp2p.getConnections()) {
      if (!isUsable(connection)) continue
      const key = connection.remotePeer.toString()
      const info: PeerInfo = {
        peerId: key,
        path: connectionPath(connection),
        transport: transportOf(connection),
        remoteAddr: remoteAddrOf(connection),
        rtt: connection.rtt,
        relay: relayIds.has(key)
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

  /**
   * Queues `body` for `peer` and resolves once the recipient acknowledged it
   * and its outbox row is on disk, with the path the acknowledged copy took.
   * If `signal` aborts or `timeout` passes first, the promise rejects with
   * DeliveryTimeoutError but the message stays queued and is still delivered
   * later.
   */
  async send (peer: PeerId | string, body: string, options: SendOptions = {}): Promise<Receipt> {
    // the outbox row is committed as the message goes on the wire (a lone
    // message goes before its commit's writes), and made durable while it
    // travels: the wait for this disk overlaps the round trip (and the
    // recipient's wait for its own)
    const id = this.write(peer, body, options, false)
    // just queued: no answer can have come yet, so there is no status to look up first
    const [receipt] = await Promise.all([this.outcome(id, options), this.store.sync()])
    return receipt
  }

  /** Queues a message (durably: the call returns once it is on disk) and returns its id; `message:status` events follow it. */
  queue (peer: PeerId | string, body: string, options: Pick<SendOptions, 'contentType' | 'replyTo'> = {}): string {
    return this.write(peer, body, options, true)
  }

  /** Checks and queues a message; `durable: false` leaves the wait for the disk to the caller (`Store.sync`). */
  private write (peer: PeerId | string, body: string, options: Pick<SendOptions, 'contentType' | 'replyTo'>, durable: boolean): string {
    if (this.stopped) {
      throw new NodeStoppedError('the node is stopped; start a new one to send')
    }
    const to = this.resolvePeer(peer)
    if (to.equals(this.peerId)) {
      throw new InvalidPeerIdError('cannot send a message to this node itself; give the recipient\'s peer ID')
    }
    const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE
    this.checkBody(body, contentType)
    if (options.replyTo != null) {
      checkMessageId(options.replyTo, 'replyTo')
    }

    // writing to a peer accepts it, as answering a message request does
    const key = to.toString()
    if (!this.policy.isTrusted(key) && !this.policy.isBlocked(key)) this.accept(key)
    const message = this.engine.queue({
      peer: to.toString(),
      id: newMessageId(),
      body,
      contentType,
      replyTo: options.replyTo,
      sentAt: Date.now()
    }, { durable })
    return message.id
  }

  /** Waits for a queued message's ack (see `send` for what a timeout means). */
  async waitFor (id: string, options: Pick<SendOptions, 'signal' | 'timeout'>): Promise<Receipt> {
    const current = this.store.getMessage(id)
    if (current?.status === 'delivered') {
      return { id, status: 'delivered', path: current.path ?? 'direct' }
    }
    // the recipient was unreachable, and a mailbox host holds it sealed: the sender may go
    if (current?.status === 'stored') {
      return { id, status: 'stored', path: 'mailbox' }
    }
    return this.outcome(id, options)
  }

  /** Waits for the ack of a message not delivered or stored yet (see `send` for what a timeout means). */
  private async outcome (id: string, options: Pick<SendOptions, 'signal' | 'timeout'>): Promise<Receipt> {
    let waiter = this.waiting.get(id)
    if (waiter == null) {
      waiter = Promise.withResolvers<Receipt>()
      waiter.promise.catch(() => {})
      this.waiting.set(id, waiter)
    }
    const timeout = options.timeout ?? this.config.sendTimeout
    // a timer cleared once answered: AbortSignal.timeout would stay armed for the whole timeout after every send
    let timer: ReturnType<typeof setTimeout> | undefined
    const timedOut = new Promise<never>((resolve, reject) => {
      timer = setTimeout(() => { reject(new DOMException(`no ack within ${timeout} ms`, 'TimeoutError')) }, timeout)
      timer.unref?.()
    })
    try {
      return await raceSignal(Promise.race([waiter.promise, timedOut]), options.signal)
    } catch (err: any) {
      if (err.name === 'MessageRejectedError' || err.name === 'NodeStoppedError' || err.name === 'MessageCancelledError' || err.name === 'MessageExpiredError') throw err
      const lastError = this.store.outboxEntry(id)?.lastError
      // not an AbortError even when the caller aborted: the message is not
      // cancelled, it stays queued, and that is what the caller must learn;
      // the abort's own reason is kept as the cause
      const aborted = options.signal?.aborted === true
      throw new DeliveryTimeoutError(`message ${id} is not acknowledged yet${aborted ? ' (the wait was aborted)' : ` after ${timeout} ms`}; it stays queued and will be delivered when the peer is reachable${lastError == null ? '' : ` (last attempt: ${lastError})`}`, aborted ? { cause: options.signal?.reason } : undefined)
    } finally {
      clearTimeout(timer)
    }
  }

  private onStatus (change: StatusChange): void {
    if (this.groupsOf.isCarrier(change.id)) {
      const about = this.groupsOf.carrierMessage(change.id)
      if (change.status === 'delivered' || change.status === 'failed') this.groupsOf.carrierSettled(change.id)
      this.onCarrierStatus(change)
      if (about != null) {
        this.dispatchEvent(new CustomEvent('group:status', {
          detail: { groupId: about.groupId, id: about.messageId, peer: change.peer, carrier: change.id, status: change.status, ...(change.path == null ? {} : { path: change.path }), ...(change.reason == null ? {} : { reason: change.reason }) }
        }))
      }
      return
    }
    const waiter = this.waiting.get(change.id)
    if (waiter != null && change.status === 'delivered') {
      this.waiting.delete(change.id)
      waiter.resolve({ id: change.id, status: 'delivered', path: change.path ?? 'direct' })
    } else if (waiter != null && change.status === 'stored') {
      this.waiting.delete(change.id)
      waiter.resolve({ id: change.id, status: 'stored', path: 'mailbox' })
    } else if (waiter != null && change.status === 'failed' && change.reason === CANCELLED_REASON) {
      this.waiting.delete(change.id)
      waiter.reject(new MessageCancelledError(`message ${change.id} was cancelled by the sender before it was delivered`))
    } else if (waiter != null && change.status === 'failed' && change.reason?.startsWith(EXPIRED_REASON_PREFIX) === true) {
      this.waiting.delete(change.id)
      waiter.reject(new MessageExpiredError(`message ${change.id} ${change.reason}`))
    } else if (waiter != null && change.status === 'failed') {
      this.waiting.delete(change.id)
      waiter.reject(new MessageRejectedError(`the recipient refused message ${change.id}: ${change.reason ?? 'no reason given'}`, change.reason ?? 'failed'))
    }
    // three changes a message: an event nobody listens to is not made
    if (this.listenerCount('message:status') > 0) this.dispatchEvent(new CustomEvent('message:status', { detail: change }))
  }

  /** Emits the messages the inbox presents, in order. */
  private present (messages: StoredMessage[]): void {
    for (const m of messages) {
      // a group's carrier: what it carries is the group's (shown by `group:message`, never as a one-to-one message)
      if (m.group != null) {
        this.groupsOf.receive(m).catch(() => {})
        continue
      }
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

  /**
   * The conversation with `peer`, oldest first: up to `limit` messages
   * written before `before` (ms) and, with `beforeId`, that come before that
   * message in the history: the page before one already shown (the way to
   * page back, as cheap far back as near the end; a time can cut between two
   * messages of the same millisecond, or place a message that waited for an
   * earlier one apart from where the history shows it).
   *
   * @throws InvalidMessageError when `beforeId` is no message of this conversation
   */
  history (peer: PeerId | string, options: { limit?: number, before?: number, beforeId?: string } = {}): HistoryEntry[] {
    const self = this.peerId.toString()
    const peerId = this.resolvePeer(peer).toString()
    let beforePosition: number | undefined
    if (options.beforeId != null) {
      checkMessageId(options.beforeId, 'beforeId')
      beforePosition = this.store.positionOf(peerId, options.beforeId)
      if (beforePosition == null) throw new InvalidMessageError(`beforeId: ${options.beforeId} is not a message of the conversation with ${peerId} (see \`parley history --json\`)`)
    }
    return this.store.history(peerId, { limit: options.limit, before: options.before, beforePosition }).map(m => toHistoryEntry(self, this.engine.overlay(m)))
  }

  // ---- the inbox: conversations and read marks ----

  /** Every conversation with a message in its history, the latest activity first (see `Conversation`). */
  conversations (): Conversation[] {
    return this.store.conversations().map(({ last, name, unread, request }) => {
      return {
        peerId: last.peer,
        ...(name == null ? {} : { name }),
        last: {
          id: last.id,
          direction: last.direction,
          preview: preview(last.body),
          contentType: last.contentType,
          at: last.createdAt,
          status: last.direction === 'in' ? 'received' : this.engine.overlay(last).status as HistoryEntry['status']
        },
        unread,
        request
      }
    })
  }

  /**
   * Marks the conversation with `peer` read up to the message `upTo` (by
   * default, everything in its history so far). A mark never moves back.
   * Sending to a peer marks its conversation read up to the message sent.
   *
   * @throws InvalidMessageError when `upTo` is not a message of this conversation
   */
  markRead (peer: PeerId | string, options: { upTo?: string } = {}): ReadMark {
    const peerId = this.resolvePeer(peer).toString()
    let position: number | undefined
    if (options.upTo != null) {
      checkMessageId(options.upTo, 'upTo')
      position = this.store.positionOf(peerId, options.upTo)
      if (position == null) throw new InvalidMessageError(`upTo: ${options.upTo} is not a message of the conversation with ${peerId} (see \`parley history --json\`)`)
    }
    return { peerId, unread: this.store.markRead(peerId, position) }
  }

  /** Messages not yet delivered or failed, oldest first. */
  outbox (): OutboxItem[] {
    const self = this.peerId.toString()
    // a group's carriers are the group's (see `groupOutbox`)
    return this.store.outbox().filter(e => e.group == null).map((e: OutboxEntry) => ({
      ...toHistoryEntry(self, this.engine.overlay(e)),
      attempts: e.attempts,
      nextAttemptAt: e.nextAttemptAt,
      lastError: e.lastError
    }))
  }

  /**
   * Takes a message that waits in the outbox back: it fails with the reason
   * "cancelled by the sender" (a `send` waiting for it rejects with
   * MessageCancelledError). One on the wire now cannot be: the recipient may
   * already hold it (MessageNotCancellableError, as for one delivered or
   * failed). The message as it now is.
   */
  cancel (id: string): HistoryEntry {
    checkMessageId(id, 'id')
    const message = this.store.getMessage(id)
    if (message?.direction !== 'out') throw new UnknownMessageError(`no message sent with id ${id}`)
    const outcome = this.engine.cancel(id)
    if (outcome === 'sending') {
      throw new MessageNotCancellableError(`message ${id} is on the wire now and may already be delivered; see how it ended with \`parley outbox\` or the history`, 'sending')
    }
    const now = this.store.getMessage(id) ?? message
    if (outcome === 'absent') {
      throw new MessageNotCancellableError(`message ${id} is ${now.status}${now.reason == null ? '' : ` (${now.reason})`}: only a message still waiting in the outbox can be cancelled`, now.status)
    }
    return toHistoryEntry(this.peerId.toString(), now)
  }

  /** A message by id, sent or received. */
  getMessage (id: string): HistoryEntry | undefined {
    checkMessageId(id, 'id')
    const m = this.store.getMessage(id)
    return m == null ? undefined : toHistoryEntry(this.peerId.toString(), this.engine.overlay(m))
  }

  status (): NodeStatus {
    return {
      peerId: this.peerId.toString(),
      addrs: this.multiaddrs.map(a => a.toString()),
      relays: this.libp2p.services.reservations.status(),
      reachability: this.reachability(),
      connections: this.libp2p.getConnections().length,
      dhtPeers: (this.libp2p.services.dht as SingleKadDHT).routingTable.size,
      outbox: this.store.outboxSize(),
      storage: { usedBytes: this.storage.check(), limitBytes: this.config.limits.maxStoreBytes, full: this.policy.full },
      requests: this.policy.requestUsage().peers,
      blocked: this.policy.blockedCount,
      mailboxes: this.mailboxes.status()
    }
  }

  /**
   * What this node knows of a peer's mailbox, where messages to it wait while
   * it is offline (looked up in the DHT when not known): the relays keeping
   * it, or undefined when the peer has none that this node can find.
   */
  async mailboxOf (peer: PeerId | string, options: AbortOptions = {}): Promise<{ hosts: string[], seq: number } | undefined> {
    return this.mailboxes.mailboxOf(this.resolvePeer(peer), options)
  }

  // ---- relays, changed while the node runs ----

  /** The relays this node reserves on now: the configured ones, and those added since. */
  relays (): Multiaddr[] {
    return this.libp2p.services.reservations.relays()
  }

  /**
   * Reserves on one more relay at once, without a restart (the caller saves
   * it in the config for the next start): trusted by the connection guard,
   * dialled, then listened on through its circuit address, which joins this
   * node's addresses and so its published peer record. A relay already used
   * under another address takes the new one. Resolves once the first attempt
   * settled, with the relay's status: not reserved, with the reason, when it
   * could not be reached or refused.
   *
   * @throws InvalidRelayAddressError when the address does not end in the relay's /p2p/<peer id>, or is this node's own
   * @throws TooManyRelaysError when the node already uses MAX_RELAYS relays
   */
  async addRelay (addr: Multiaddr): Promise<RelayStatus> {
    if (relayPeerOf(addr) === this.peerId.toString()) throw new InvalidRelayAddressError('that is this node\'s own address: a node cannot be its own relay')
    const { reservations, connectionGuard } = this.libp2p.services
    const before = reservations.relays().join(' ')
    const id = relayPeerOf(addr)
    const trustedBefore = id != null && connectionGuard.trustedRelays().includes(id)
    // trusted before it is dialled, so that its first connection is let in and tagged like a relay's
    if (id != null) connectionGuard.trustRelay(id)
    const added = reservations.addRelay(addr)
    // the list changes as soon as the keeper took the relay, before its first attempt ends
    if (reservations.relays().join(' ') !== before) this.relaysChanged()
    try {
      return await added
    } catch (err) {
      if (id != null && !trustedBefore) connectionGuard.distrustRelay(id)
      throw err
    }
  }

  /**
   * Stops using a relay (its peer ID, or its address as `status` lists it)
   * at once: no more attempts, its connections closed, its circuit address
   * gone from this node's addresses (and so from its next peer record), its
   * trust withdrawn. False when the node did not use it.
   */
  async removeRelay (relay: string | PeerId): Promise<boolean> {
    const { reservations, connectionGuard } = this.libp2p.services
    const key = relay.toString()
    const addr = reservations.relays().find(r => r.toString() === key || relayPeerOf(r) === key)
    if (addr == null) return false
    const removing = reservations.removeRelay(addr.toString())
    // the list changed as soon as the keeper let the relay go, before the hang-up ends
    this.relaysChanged()
    const removed = await removing
    const id = relayPeerOf(addr)
    if (id != null) connectionGuard.distrustRelay(peerIdFromString(id))
    this.checkReachability()
    return removed
  }

  private relaysChanged (): void {
    this.dispatchEvent(new CustomEvent('relays:change', { detail: this.relays().map(r => r.toString()) }))
    // the mailbox lives on the relays unless the config names its own hosts
    if (this.config.mailboxesFollowRelays) {
      this.mailboxes.setHosts(this.relays()).catch(err => { this.log.error('could not move the mailbox to the new relays - %e', err) })
    }
    this.checkReachability()
  }

  /** Whether this node can be reached from outside its LAN, and why not (see node/reachability.ts). */
  reachability (): Reachability {
    const keeper = this.libp2p.services.reservations
    const relays = keeper.status().map(r => ({ ...r, lastError: keeper.lastError(r.relay) }))
    return computeReachability(relays, this.multiaddrs.map(a => a.toString()))
  }

  /** Emits `reachability` when it changed since the last time (a reservation made or lost, a public address). */
  private checkReachability (): void {
    const now = this.reachability()
    const key = JSON.stringify(now)
    if (key === this.lastReachability) return
    this.lastReachability = key
    this.dispatchEvent(new CustomEvent('reachability', { detail: now }))
  }

  // ---- groups (protocols/group/README.md) ----

  /**
   * Creates a group with this node as its admin and `members` (peer IDs or
   * contact names; at most 99 besides this node). Each member is sent the
   * group's log through the outbox.
   */
  async createGroup (name: string, members: Array<PeerId | string>): Promise<GroupInfo> {
    this.checkRunning()
    const peers = members.map(m => this.groupPeer(m))
    return this.groupsOf.create(name, peers)
  }

  /** Adds a member (admins only); every member, the new one included, is sent the log. */
  async addMember (group: string, peer: PeerId | string): Promise<GroupInfo> {
    this.checkRunning()
    return this.groupsOf.change(this.groupsOf.resolve(group), { kind: 'add', target: this.groupPeer(peer) })
  }

  /** Removes a member (admins only): it is sent the log that says so, and nothing written after. */
  async removeMember (group: string, peer: PeerId | string): Promise<GroupInfo> {
    this.checkRunning()
    return this.groupsOf.change(this.groupsOf.resolve(group), { kind: 'remove', target: this.groupPeer(peer) })
  }

  /** Leaves a group: the others are told; its history stays readable here. */
  async leaveGroup (group: string): Promise<GroupInfo> {
    this.checkRunning()
    return this.groupsOf.change(this.groupsOf.resolve(group), { kind: 'leave' })
  }

  /** Renames a group (admins only). */
  async renameGroup (group: string, name: string): Promise<GroupInfo> {
    this.checkRunning()
    return this.groupsOf.change(this.groupsOf.resolve(group), { kind: 'rename', name })
  }

  /** Every group this node knows, those it left or was removed from included (`member: false`). */
  groups (): GroupInfo[] {
    return this.groupsOf.list()
  }

  /** A group by ID or by its name. @throws UnknownGroupError */
  group (group: string): GroupInfo {
    return this.groupsOf.get(this.groupsOf.resolve(group))
  }

  /** The groups as an inbox: each one's last message and unread count, the latest activity first. */
  groupConversations (): GroupConversation[] {
    const self = this.peerId.toString()
    return this.groupsOf.list().map(group => {
      const { last, unread } = this.store.groups.inbox(group.id, self)
      return {
        groupId: group.id,
        name: group.name,
        member: group.member,
        ...(last == null ? {} : { last: { id: last.id, from: last.sender, preview: preview(last.body), contentType: last.contentType, at: last.receivedAt } }),
        unread
      }
    }).sort((a, b) => (b.last?.at ?? 0) - (a.last?.at ?? 0))
  }

  /** Marks everything that has arrived in a group read. @throws UnknownGroupError */
  markGroupRead (group: string): { groupId: string, unread: number } {
    const groupId = this.groupsOf.resolve(group)
    this.store.groups.markRead(groupId)
    return { groupId, unread: this.store.groups.inbox(groupId, this.peerId.toString()).unread }
  }

  /** Group carriers (messages and membership changes on their way to a member) still in the outbox. */
  groupOutbox (): Array<{ peer: string, id: string, attempts: number, lastError?: string }> {
    return this.store.outbox().filter(e => e.group != null).map(e => ({ peer: e.peer, id: e.id, attempts: e.attempts, ...(e.lastError == null ? {} : { lastError: e.lastError }) }))
  }

  /**
   * Queues a message for every member of a group (one carrier each, written
   * durably before this resolves) and returns without waiting for any.
   */
  async queueGroup (group: string, body: string, options: Pick<SendOptions, 'contentType'> = {}): Promise<Omit<GroupSendResult, 'recipients'> & { carriers: Array<{ peer: string, id: string }> }> {
    this.checkRunning()
    const groupId = this.groupsOf.resolve(group)
    const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE
    this.checkBody(body, contentType)
    await this.caughtUpForGroups()
    const { message, carriers } = await this.groupsOf.send(groupId, body, contentType)
    return { groupId, id: message.id, seq: message.seq, lamport: message.lamport, carriers }
  }

  /**
   * Sends a message to every member of a group: one carrier per member
   * through the outbox. Resolves once each member has it (`delivered`), or a
   * mailbox host holds it for the member (`stored`), or the member could not
   * be reached on a first try (`queued`: the outbox keeps trying, and leaves
   * it in the member's mailbox): it never waits for an unreachable member
   * longer than that, nor than `timeout`.
   */
  async sendGroup (group: string, body: string, options: Pick<SendOptions, 'contentType' | 'timeout' | 'signal'> = {}): Promise<GroupSendResult> {
    this.checkRunning()
    const groupId = this.groupsOf.resolve(group)
    const contentType = options.contentType ?? DEFAULT_CONTENT_TYPE
    this.checkBody(body, contentType)
    const waits: Array<{ peer: string, id: string, settled: Promise<GroupRecipientStatus> }> = []
    await this.caughtUpForGroups()
    const { message } = await this.groupsOf.send(groupId, body, contentType, ({ peer, id }) => {
      waits.push({ peer, id, settled: new Promise(resolve => { this.carrierWaits.set(id, { peer, settle: resolve }) }) })
    })
    const timeout = options.timeout ?? this.config.sendTimeout
    const signal = AbortSignal.any([AbortSignal.timeout(timeout), ...(options.signal == null ? [] : [options.signal])])
    const recipients = await Promise.all(waits.map(async ({ peer, id, settled }) => {
      try {
        return await raceSignal(settled, signal)
      } catch {
        // not settled in time: it stays in the outbox
        this.carrierWaits.delete(id)
        return { peer, id, status: 'queued' as const }
      }
    }))
    return { groupId, id: message.id, seq: message.seq, lamport: message.lamport, recipients }
  }

  /** A group's messages in display order (Lamport time, then sender and seq): the `limit` last before the Lamport time `before`. */
  groupHistory (group: string, options: { limit?: number, before?: number } = {}): GroupMessage[] {
    const groupId = this.groupsOf.resolve(group)
    return this.store.groups.messages(groupId, options).map(m => ({
      groupId,
      id: m.id,
      from: m.sender,
      seq: m.seq,
      lamport: m.lamport,
      body: m.body,
      contentType: m.contentType,
      sentAt: m.sentAt,
      receivedAt: m.receivedAt,
      ...(m.path == null ? {} : { path: m.path as GroupMessage['path'] })
    }))
  }

  /**
   * Before this node writes to a group, what others left in its mailboxes
   * while it was away is taken and handled (waiting at most
   * GROUP_CATCH_UP_WAIT for hosts that answer slowly): a removal made
   * meanwhile is known, and nothing goes to the removed member.
   */
  private async caughtUpForGroups (): Promise<void> {
    try {
      await raceSignal(this.mailboxes.caughtUp(), AbortSignal.timeout(GROUP_CATCH_UP_WAIT))
    } catch {
      // a host that answers, but slowly: write now; the members' stale-log answers cover the rest
    }
    await this.groupsOf.settled()
  }

  private onCarrierStatus (change: StatusChange): void {
    const settle = this.carrierWaits.get(change.id)?.settle
    if (settle == null) return
    // a first attempt that did not get through (the reason says why): the member is not reachable now
    const unreachable = change.status === 'queued' && change.reason != null
    if (change.status === 'delivered' || change.status === 'stored' || change.status === 'failed' || unreachable) {
      this.carrierWaits.delete(change.id)
      settle({ peer: change.peer, id: change.id, status: change.status, ...(change.path == null ? {} : { path: change.path }), ...(change.reason == null ? {} : { reason: change.reason }) })
    }
  }

  private groupPeer (peer: PeerId | string): string {
    const id = this.resolvePeer(peer)
    return id.toString()
  }

  private checkRunning (): void {
    if (this.stopped) throw new NodeStoppedError('the node is stopped; start a new one')
  }

  /** What the recipient would refuse, or this node cannot store, said before anything is written (one-to-one and group sends alike). */
  private checkBody (body: string, contentType: string): void {
    if (this.policy.full) throw new StorageFullError(`the message store is at its limit (${this.config.limits.maxStoreBytes} bytes, limits.maxStoreBytes): free room or raise the limit to send`)
    if (typeof body !== 'string' || body.length === 0) throw new EmptyMessageError('the message is empty; write some text to send')
    if (!body.isWellFormed()) throw new InvalidMessageError('the message has a lone UTF-16 surrogate (half of an emoji?): it is not text that UTF-8 can carry')
    const size = utf8Length(body)
    if (size > MAX_BODY_BYTES) throw new MessageTooLargeError(`the message is ${size} bytes of UTF-8, over the ${MAX_BODY_BYTES}-byte limit; split it into smaller messages`)
    if (utf8Length(contentType) > MAX_CONTENT_TYPE_BYTES) throw new MessageTooLargeError(`the content type is over the ${MAX_CONTENT_TYPE_BYTES}-byte limit`)
    if (!isMediaType(contentType)) throw new InvalidMessageError(`the content type "${contentType}" is not a media type (type/subtype, printable ASCII, e.g. text/markdown); the recipient would refuse it`)
  }

  // ---- files (node/files/transfers.ts, protocols/file) ----

  private wireFiles (): void {
    const files = this.fileTransfers
    for (const name of ['file:offer', 'file:progress', 'file:status'] as const) {
      files.addEventListener(name, (evt: CustomEvent<any>) => { this.dispatchEvent(new CustomEvent(name, { detail: evt.detail })) })
    }
    this.addEventListener('message', (evt) => { files.onMessage(evt.detail) })
    this.engine.addEventListener('message:status', (evt) => {
      // an offer moves on only once its message is settled: no lookup for every message queued and sent
      const { id, status, reason } = evt.detail
      if (status === 'delivered' || status === 'stored' || status === 'failed') files.onOfferStatus(id, status, reason)
    })
    this.libp2p.addEventListener('connection:open', (evt) => { files.wake(evt.detail.remotePeer.toString()) })
  }

  /**
   * Offers a file to `peer`: hashes it, queues the offer as a message of
   * its own content type (so it is delivered like any message, through a
   * mailbox if the peer is offline) and serves the file to that peer alone
   * while the offer stands. A path is served where it is (a change to the
   * file fails the transfer) unless `copy` is set; a stream is copied. The
   * content never goes into a mailbox.
   */
  async sendFile (peer: PeerId | string, source: string | AsyncIterable<Uint8Array>, options: SendFileOptions = {}): Promise<{ id: string, status: FileInfo['status'] }> {
    if (this.stopped) throw new NodeStoppedError('the node is stopped; start a new one to send')
    const to = this.resolvePeer(peer)
    if (to.equals(this.peerId)) throw new InvalidPeerIdError('cannot send a file to this node itself')
    const info = await this.fileTransfers.send(to.toString(), source, options)
    return { id: info.id, status: info.status }
  }

  /** Accepts a file offer that waits for the user: it is fetched now. */
  acceptFile (id: string): FileInfo {
    return this.fileTransfers.accept(id)
  }

  /** Refuses a file offered to this node (or stops fetching it). */
  refuseFile (id: string): FileInfo {
    return this.fileTransfers.cancel(id)
  }

  /** Withdraws a file this node offered, or refuses one offered to it. */
  cancelFile (id: string): FileInfo {
    return this.fileTransfers.cancel(id)
  }

  /** A transfer by id (its offer message's id), sent or received. */
  file (id: string): FileInfo | undefined {
    return this.fileTransfers.get(id)
  }

  /** Transfers, the latest first. */
  files (options: { direction?: 'in' | 'out', peer?: PeerId | string, limit?: number } = {}): FileInfo[] {
    return this.fileTransfers.list({ ...options, peer: options.peer == null ? undefined : this.resolvePeer(options.peer).toString() })
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    // transfers end first, their temporary directory once nothing writes to it
    const filesStopped = this.fileTransfers.stop()
    this.storage.stop()
    this.engine.stop()
    this.inbox.stop()
    this.paths.stop()
    for (const waiter of this.waiting.values()) {
      waiter.reject(new NodeStoppedError('the node stopped before the message was acknowledged; it stays queued for the next start'))
    }
    this.waiting.clear()
    for (const [id, { peer, settle }] of this.carrierWaits) settle({ peer, id, status: 'queued' })
    this.carrierWaits.clear()
    await this.mailboxes.stop()
    await this.libp2p.stop()
    // what arrived is handled before the store closes under it
    await this.groupsOf.settled()
    await filesStopped
    this.store.close()
    await this.closeDatastore()
  }
}

function tryPeerId (text: string): PeerId | undefined {
  try {
    return peerIdOf(text)
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

/** The parts of a node, built by `createNode` in the order they depend on each other. */
export interface NodeParts {
  /** Created, not yet started. */
  libp2p: NodeLibp2p
  store: Store
  config: ResolvedNodeConfig
  policy: Policy
  storage: StorageMonitor
  inbox: Inbox
  reception: Reception
  paths: PathUpgrader
  engine: DeliveryEngine
  mailboxes: Mailboxes
  groups: Groups
  files: FileTransfers
  closeDatastore: () => Promise<void>
}

/**
 * Starts a parley node. Without `dataDir` everything is in memory.
 *
 * The parts are built in the order data flows: the store and the policy
 * first, then what receives (the inbox and the /im callbacks), then libp2p
 * (created stopped, so nothing is served yet), then what sends (router, path
 * upgrader, delivery engine); only then does libp2p start.
 */
export async function createNode (config: NodeConfig = {}): Promise<ParleyNode> {
  const resolved = resolveNodeConfig(config)
  const privateKey = await loadIdentity(resolved.dataDir)
  // the datastore's lock also keeps a second process off this data dir
  const { datastore, close } = await openDatastore(resolved.dataDir)
  const logger = defaultLogger()
  let store: Store | undefined
  let libp2p: NodeLibp2p | undefined
  /** A node without a data dir keeps its files' transfers in a directory of its own, removed when it stops or fails to start. */
  let temporaryFilesDir: string | undefined
  try {
    store = new Store(resolved.dataDir == null ? undefined : join(resolved.dataDir, STORE_FILE))
    if (resolved.dataDir != null) {
      // the history is nobody else's, whatever mode the data dir had before
      const db = join(resolved.dataDir, STORE_FILE)
      await makePrivateFiles([db, `${db}-wal`, `${db}-shm`, `${db}-journal`])
    }
    const policy = loadPolicy(store, resolved)
    const storage = new StorageMonitor({ store, policy, log: logger.forComponent('parley:storage') }, resolved.limits.maxStoreBytes)
    // a store in memory has no fsync for the messages of one turn to share: each is acked within the read of its frame
    const inbox = new Inbox({ store }, { gapTimeout: resolved.gapTimeout, commitAtOnce: store.file == null })
    const reception = new Reception({ policy, inbox, storage }, resolved.limits)
    // built before libp2p, which serves its offers; what it dials and queues with comes after
    const late: { router?: Router, node?: ParleyNode } = {}
    const filesDir = resolved.dataDir == null ? await mkdtemp(join(tmpdir(), 'parley-files-')) : join(resolved.dataDir, 'files')
    if (resolved.dataDir == null) temporaryFilesDir = filesDir
    const files = new FileTransfers({
      store,
      isBlocked: (peer) => policy.isBlocked(peer),
      isContact: (peer) => !policy.isBlocked(peer) && (store as Store).contactsOf(peer).length > 0,
      queueOffer: (peer, body, contentType) => (late.node as ParleyNode).queue(peer, body, { contentType }),
      cancelOffer: (id) => { try { late.node?.cancel(id) } catch {} },
      connect: async (peer, options) => (late.router as Router).connect(peer, options),
      peerIdOf: (peer) => peerIdFromString(peer),
      clock: systemClock,
      log: logger.forComponent('parley:files')
    }, resolved.files, filesDir, temporaryFilesDir != null)

    libp2p = await createNodeLibp2p(resolved, privateKey, datastore, logger, {
      files: files.serverInit(),
      admit: reception.admit,
      store: reception.store,
      onRefused: reception.onRefused,
      // the connection guard's exemptions: contacts and accepted peers (and the
      // relays this node reserves on, which the guard keeps itself: see addRelay)
      trust: {
        isTrusted: (peer) => policy.isTrusted(peer.toString()),
        isDenied: (peer) => policy.isDenied(peer.toString())
      }
    })
    const network = libp2p
    policy.onAbuse = (peer) => {
      // it kept sending while told to wait: drop its connections (a parley sender
      // waits and comes back), and refuse strangers from its IP for as long as it
      // is refused itself, or it would come back under a fresh identity
      const peerId = peerIdFromString(peer)
      const until = Date.now() + resolved.limits.abusePenaltyMs
      for (const connection of network.getConnections(peerId)) network.services.connectionGuard.penalize(connection.remoteAddr, until)
      network.hangUp(peerId).catch(() => {})
    }

    const router = new Router(routerComponents(libp2p, resolved.bootstrap, resolved.dhtProtocol))
    const paths = new PathUpgrader(pathUpgraderComponents(libp2p))
    const mailboxes = await Mailboxes.create({
      peerId: libp2p.peerId,
      privateKey,
      peerStore: libp2p.peerStore,
      dialProtocol: async (peer, protocol, options) => network.dialProtocol(peer, protocol, options),
      contentRouting: libp2p.contentRouting,
      store,
      logger
    }, { dataDir: resolved.dataDir, hosts: resolved.mailboxes })
    const engine = new DeliveryEngine({ store, router, im: libp2p.services.im, logger, mailbox: mailboxes.depositor }, { ...resolved.retry, messageExpiry: resolved.messageExpiry, mailboxAfter: resolved.mailboxAfter })
    const groups = new Groups({ peerId: libp2p.peerId, privateKey, store, queue: (message) => engine.queue(message), log: logger.forComponent('parley:groups') })
    await groups.load(store.outbox().filter(e => e.group != null).map(e => e.id))
    const node = new ParleyNode({ libp2p, store, config: resolved, policy, storage, inbox, reception, paths, engine, mailboxes, groups, files, closeDatastore: close })
    late.router = router
    late.node = node
    await libp2p.start()
    node.start()
    await files.start()
    return node
  } catch (err) {
    await Promise.resolve(libp2p?.stop()).catch(() => {})
    store?.close()
    await close()
    if (temporaryFilesDir != null) await rm(temporaryFilesDir, { recursive: true, force: true }).catch(() => {})
    throw err
  }
}

/** A contact name the node takes: not empty, no spaces at its ends, not a peer ID (it would hide that peer). */
function checkContactName (name: string): void {
  if (typeof name !== 'string' || name.trim() === '' || name !== name.trim()) {
    throw new InvalidContactNameError('a contact name must be non-empty and not start or end with spaces')
  }
  if (tryPeerId(name) != null) {
    throw new InvalidContactNameError(`"${name}" is a peer ID; a contact name that looks like one would hide that peer. Pick another name`)
  }
}

/** A body cut to PREVIEW_CHARS characters (the cut ends with `…`). */
function preview (body: string): string {
  const chars = Array.from(body)
  return chars.length > PREVIEW_CHARS ? `${chars.slice(0, PREVIEW_CHARS - 1).join('')}…` : body
}
