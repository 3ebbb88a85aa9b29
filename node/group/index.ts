/**
 * Groups (protocols/group/README.md): this node's groups, their membership
 * logs, sending a group message to each member through the outbox (one /im
 * carrier per member), and what arriving carriers hold. The log's rules are
 * in log.ts (pure); this is the I/O around them.
 */
import { randomBytes } from '@noble/hashes/utils.js'
import { TypedEventEmitter } from 'main-event'
import { systemClock } from '../../common/clock.js'
import { decodePayload, encodePayload, fromHex, hex, signMessage, verifyMessage, verifyOp } from '../../protocols/group/codec.js'
import { MAX_MEMBERS } from '../../protocols/group/constants.js'
import { DEFAULT_CONTENT_TYPE, MAX_BODY_BYTES } from '../../protocols/im/index.js'
import { GroupChangeRefusedError, UnknownGroupError } from '../errors.js'
import { newMessageId } from '../message-id.js'
import { MembershipLog, OpRefusedError } from './log.js'
import { changeOp, createOp } from './ops.js'
import type { GroupChange, GroupInfo, GroupMessage } from './types.js'
import type { VerifiedGroupMessage, VerifiedOp, SignedOp } from '../../protocols/group/codec.js'
import type { Clock } from '../../common/clock.js'
import type { Store, StoredMessage, NewOutbound } from '../store/index.js'
import type { MessagePath } from '../types.js'
import type { OpChange } from './ops.js'
import type { Logger, PeerId, PrivateKey } from '@libp2p/interface'

/** Payloads kept waiting for ops this node does not hold yet, per group; beyond it they are dropped (the sender's copy is delivered all the same). */
export const MAX_PENDING_PER_GROUP = 256
/** Groups with waiting payloads this node is not (yet) in: what a stranger can make it keep. */
export const MAX_PENDING_UNKNOWN_GROUPS = 16
/** (group, peer, heads) a stale sender was answered for, remembered at most. */
const MAX_ANSWERED = 10_000

export interface GroupsComponents {
  peerId: PeerId
  privateKey: PrivateKey
  store: Pick<Store, 'transaction' | 'groups'>
  /** Writes one outbound /im message (a carrier) to the outbox. */
  queue(message: NewOutbound): StoredMessage
  log: Logger
  clock?: Pick<Clock, 'now'>
}

export interface GroupsEvents {
  'group:message': CustomEvent<GroupMessage>
  'group:change': CustomEvent<GroupChange>
}

/** One carrier queued: the member and the carrier's /im id. */
export interface Carrier {
  peer: string
  id: string
}

export class Groups extends TypedEventEmitter<GroupsEvents> {
  private readonly self: string
  private readonly logs = new Map<string, MembershipLog>()
  private readonly clock: Pick<Clock, 'now'>
  /** Carrier ids in this node's outbox: their statuses are a group's, not a one-to-one message's. */
  private readonly carriers = new Set<string>()
  /** The group message each carrier sent since start takes (not ops' carriers, nor those from before a restart). */
  private readonly carrierMessages = new Map<string, { groupId: string, messageId: string }>()
  /** (group, peer, heads) a stale sender was sent the log for: once each, not once per message. */
  private readonly answered = new Set<string>()
  private incoming: Promise<void> = Promise.resolve()
  private sending: Promise<unknown> = Promise.resolve()

  constructor (private readonly components: GroupsComponents) {
    super()
    this.self = components.peerId.toString()
    this.clock = components.clock ?? systemClock
  }

  /** Reads every group's log from the store (each op checked again: the store is not trusted more than a peer); `carriers`: those still in the outbox. */
  async load (carriers: Iterable<string> = []): Promise<void> {
    for (const id of carriers) this.carriers.add(id)
    const { groups } = this.components.store
    for (const row of groups.all()) {
      const ops: VerifiedOp[] = []
      for (const stored of groups.ops(row.id)) {
        try {
          ops.push(await verifyOp({ op: stored.op as Uint8Array<ArrayBuffer>, signature: stored.signature as Uint8Array<ArrayBuffer> }))
        } catch (err) {
          this.components.log.error('group %s: a stored op does not verify - %e', row.id, err)
        }
      }
      const create = ops.find(o => o.kind === 'create' && o.hash === row.id)
      if (create == null) continue
      const log = new MembershipLog(create)
      log.merge(ops)
      this.logs.set(row.id, log)
    }
  }

  /**
   * Whether `peer` shares a group with this node (both members now) that
   * someone this node trusts stands behind: created by this node or by a peer
   * `vouched` for, or with such a peer among its admins. A stranger who puts
   * this node in a group of its own, with any number of identities of its own,
   * makes none of them trusted.
   */
  sharesVouchedGroup (peer: string, vouched: (peer: string) => boolean): boolean {
    for (const log of this.logs.values()) {
      const { members, admins, creator } = log.state
      if (!members.has(this.self) || !members.has(peer)) continue
      const backer = (p: string): boolean => p === this.self || vouched(p)
      if (backer(creator) || [...admins].some(backer)) return true
    }
    return false
  }

  /** Every member of every group this node is in, itself aside. */
  coMembers (): Set<string> {
    const out = new Set<string>()
    for (const log of this.logs.values()) {
      if (!log.state.members.has(this.self)) continue
      for (const m of log.state.members) if (m !== this.self) out.add(m)
    }
    return out
  }

  isCarrier (id: string): boolean {
    return this.carriers.has(id)
  }

  /** A carrier's status changed: once it is out of the outbox for good it is forgotten here. */
  carrierSettled (id: string): void {
    this.carriers.delete(id)
    this.carrierMessages.delete(id)
  }

  /** The group message a carrier takes, when it is one this node sent since it started. */
  carrierMessage (id: string): { groupId: string, messageId: string } | undefined {
    return this.carrierMessages.get(id)
  }

  list (): GroupInfo[] {
    return [...this.logs.values()].map(log => this.info(log))
  }

  get (groupId: string): GroupInfo {
    return this.info(this.logOf(groupId))
  }

  /** A group by ID, or by name when exactly one of this node's groups has it. */
  resolve (groupOrName: string): string {
    if (this.logs.has(groupOrName)) return groupOrName
    const named = [...this.logs.values()].filter(l => l.state.name === groupOrName)
    if (named.length === 1) return named[0].id
    if (named.length > 1) throw new UnknownGroupError(`${named.length} groups are called "${groupOrName}"; give the group's ID (\`parley group ls\`)`)
    throw new UnknownGroupError(`no group "${groupOrName}" on this node; see them with \`parley group ls\``)
  }

  private logOf (groupId: string): MembershipLog {
    const log = this.logs.get(groupId)
    if (log == null) throw new UnknownGroupError(`no group ${groupId} on this node; see them with \`parley group ls\``)
    return log
  }

  private info (log: MembershipLog): GroupInfo {
    const s = log.state
    return { id: s.id, name: s.name, members: [...s.members].sort(), admins: [...s.admins].sort(), creator: s.creator, member: s.members.has(this.self) }
  }

  /** Creates a group with this node as its admin, and sends its log to each member. */
  async create (name: string, members: string[]): Promise<GroupInfo> {
    const others = [...new Set(members)].filter(m => m !== this.self)
    if (others.length + 1 > MAX_MEMBERS) throw new GroupChangeRefusedError(`a group has at most ${MAX_MEMBERS} members, this node included`)
    let op: VerifiedOp
    try {
      op = await createOp(this.components.privateKey, name, others, randomBytes(16) as Uint8Array<ArrayBuffer>, this.clock.now())
    } catch (err: any) {
      throw new GroupChangeRefusedError(err.message)
    }
    const log = new MembershipLog(op)
    const { store } = this.components
    store.transaction(() => {
      store.groups.addGroup(log.id, this.clock.now())
      store.groups.addOp(log.id, { hash: op.hash, op: op.bytes, signature: op.signature })
      store.groups.witness(log.id, op.lamport)
      this.fanOut(others, { ops: [op] })
    })
    this.logs.set(log.id, log)
    this.changed(log, [op])
    return this.info(log)
  }

  /**
   * Signs a membership change, applies it, and sends the whole log to every
   * member (and to a removed one, so that it learns it was removed).
   */
  async change (groupId: string, change: OpChange): Promise<GroupInfo> {
    const log = this.logOf(groupId)
    const before = log.state
    if ('target' in change && change.target === this.self && change.kind === 'remove') throw new GroupChangeRefusedError('to leave a group, leave it (`leaveGroup`)')
    if (!before.members.has(this.self)) throw new GroupChangeRefusedError(`this node is no longer a member of group ${groupId}`)
    const op = await changeOp(this.components.privateKey, groupId, log.nextLink(), change, this.clock.now()).catch((err: any) => {
      throw new GroupChangeRefusedError(err.message)
    })
    try {
      log.add(op)
    } catch (err) {
      if (!(err instanceof OpRefusedError)) throw err
      throw new GroupChangeRefusedError(err.reason === 'not-allowed'
        ? `${change.kind} is not allowed: only an admin changes the membership (admins: ${[...before.admins].join(', ')}), a removed peer must be a member, and a group has at most ${MAX_MEMBERS} members`
        : err.message)
    }
    const after = log.state
    const recipients = new Set([...before.members, ...after.members])
    recipients.delete(this.self)
    const { store } = this.components
    store.transaction(() => {
      store.groups.addOp(groupId, { hash: op.hash, op: op.bytes, signature: op.signature })
      store.groups.witness(groupId, op.lamport)
      this.fanOut([...recipients], { ops: log.all() })
    })
    this.changed(log, [op])
    return this.info(log)
  }

  /**
   * Sends a group message: signed once, one carrier per member queued in one
   * transaction with this node's own copy (so a crash leaves all or none).
   */
  async send (groupId: string, body: string, contentType = DEFAULT_CONTENT_TYPE, watch?: (carrier: Carrier) => void): Promise<{ message: GroupMessage, carriers: Carrier[] }> {
    // one at a time: each takes the next seq and Lamport time the one before left
    const turn = this.sending.then(async () => this.sendNow(groupId, body, contentType, watch))
    this.sending = turn.catch(() => {})
    return turn
  }

  private async sendNow (groupId: string, body: string, contentType: string, watch?: (carrier: Carrier) => void): Promise<{ message: GroupMessage, carriers: Carrier[] }> {
    const log = this.logOf(groupId)
    const state = log.state
    if (!state.members.has(this.self)) throw new GroupChangeRefusedError(`this node is no longer a member of group ${groupId}; it cannot write to it`)
    const { store } = this.components
    const now = this.clock.now()
    const row = store.groups.get(groupId)
    const lamport = Math.max(row?.lamport ?? 0, state.lamport) + 1
    const seq = row?.nextSeq ?? 1
    const id = randomBytes(16) as Uint8Array<ArrayBuffer>
    const signed = await signMessage(this.components.privateKey, {
      group: fromHex(groupId),
      sender: this.components.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
      id,
      seq: BigInt(seq),
      lamport: BigInt(lamport),
      heads: state.heads.map(fromHex),
      sentAt: BigInt(now),
      body,
      contentType: contentType === DEFAULT_CONTENT_TYPE ? undefined : contentType
    })
    const message: GroupMessage = { groupId, id: hex(id), from: this.self, seq, lamport, body, contentType, sentAt: now, receivedAt: now }
    const recipients = [...state.members].filter(m => m !== this.self)
    const carriers = store.transaction(() => {
      // taken in the transaction, so that two sends never share a seq
      const taken = store.groups.takeSeq(groupId)
      if (taken !== seq) throw new Error(`group ${groupId}: seq ${seq} was taken meanwhile`)
      store.groups.witness(groupId, lamport)
      store.groups.addMessage({ group: groupId, sender: this.self, seq, id: message.id, lamport, body, contentType, sentAt: now, receivedAt: now })
      return this.fanOut(recipients, { message: signed }, watch, { groupId, messageId: message.id })
    })
    return { message, carriers }
  }

  /** Queues one carrier per recipient (inside the caller's transaction). */
  private fanOut (recipients: string[], payload: { ops?: Array<Pick<VerifiedOp, 'bytes' | 'signature'>>, message?: { message: Uint8Array<ArrayBuffer>, signature: Uint8Array<ArrayBuffer> } }, watch?: (carrier: Carrier) => void, about?: { groupId: string, messageId: string }): Carrier[] {
    if (recipients.length === 0) return []
    const bytes = encodePayload({
      ops: (payload.ops ?? []).map(o => ({ op: o.bytes as Uint8Array<ArrayBuffer>, signature: o.signature as Uint8Array<ArrayBuffer> })),
      message: payload.message
    })
    const sentAt = this.clock.now()
    return recipients.map(peer => {
      const id = newMessageId()
      this.carriers.add(id)
      if (about != null) this.carrierMessages.set(id, about)
      // before it is queued: its first status must not be missed
      watch?.({ peer, id })
      this.components.queue({ peer, id, body: '', contentType: DEFAULT_CONTENT_TYPE, sentAt, group: bytes })
      return { peer, id }
    })
  }

  /**
   * A carrier the inbox presents (each peer's in the order it sent them):
   * handled one at a time, in that order.
   */
  receive (carrier: StoredMessage): Promise<void> {
    const run = this.incoming.then(async () => {
      await this.handle(carrier.peer, carrier.group as Uint8Array, carrier.path ?? 'direct', carrier.receivedAt ?? carrier.createdAt)
    }).catch(err => { this.components.log.error('a group carrier from %s was not handled - %e', carrier.peer, err) })
    this.incoming = run
    return run
  }

  /** Resolves once every carrier handed to `receive` so far is handled. */
  async settled (): Promise<void> {
    await this.incoming
  }

  private async handle (from: string, bytes: Uint8Array, path: MessagePath, receivedAt: number, pendingRow?: number): Promise<'done' | 'waiting'> {
    let payload
    try {
      payload = decodePayload(bytes)
    } catch (err) {
      this.components.log('refused a group payload from %s - %e', from, err)
      return 'done'
    }
    let groupId: string | undefined
    if (payload.ops.length > 0) {
      groupId = await this.takeOps(from, payload.ops)
    }
    if (payload.message == null) return 'done'
    let message: VerifiedGroupMessage
    try {
      message = await verifyMessage(payload.message, MAX_BODY_BYTES)
    } catch (err) {
      this.components.log('refused a group message from %s - %e', from, err)
      return 'done'
    }
    if (groupId != null && groupId !== message.group) {
      this.components.log('refused a group payload from %s: its ops and message are of different groups', from)
      return 'done'
    }
    return this.takeMessage(from, message, { bytes, path, receivedAt, pendingRow })
  }

  /** Verifies and merges a peer's ops; the group they are of, if any were taken. */
  private async takeOps (from: string, signed: SignedOp[]): Promise<string | undefined> {
    const ops: VerifiedOp[] = []
    for (const s of signed) {
      try {
        ops.push(await verifyOp(s))
      } catch (err) {
        this.components.log('refused an op from %s - %e', from, err)
      }
    }
    const groupIds = new Set(ops.map(o => o.group))
    if (groupIds.size !== 1) {
      if (groupIds.size > 1) this.components.log('refused ops from %s: of several groups', from)
      return undefined
    }
    const groupId = [...groupIds][0]
    let log = this.logs.get(groupId)
    const fresh = log == null
    if (log == null) {
      const create = ops.find(o => o.kind === 'create' && o.hash === groupId)
      if (create == null) return undefined
      log = new MembershipLog(create)
    }
    const { added, refused } = log.merge(ops)
    for (const r of refused) this.components.log('refused op %s of group %s from %s: %s', r.op.hash, groupId, from, r.error.message)
    // a group this node was never put in is none of its business
    if (fresh && !log.all().some(o => o.members?.includes(this.self) === true || o.target === this.self)) return undefined
    const taken = fresh ? log.all() : added
    if (taken.length === 0) return groupId
    const { store } = this.components
    store.transaction(() => {
      if (fresh) store.groups.addGroup(groupId, this.clock.now())
      for (const op of taken) store.groups.addOp(groupId, { hash: op.hash, op: op.bytes, signature: op.signature })
      store.groups.witness(groupId, log.state.lamport)
    })
    this.logs.set(groupId, log)
    this.changed(log, taken)
    await this.retryPending(groupId)
    return groupId
  }

  /**
   * A group message from `from`: shown once if its sender is a member both
   * under the heads it was sent under and now, and it came from its sender;
   * kept waiting while its heads are not known here.
   */
  private async takeMessage (from: string, message: VerifiedGroupMessage, carrier: { bytes: Uint8Array, path: MessagePath, receivedAt: number, pendingRow?: number }): Promise<'done' | 'waiting'> {
    const { store } = this.components
    if (message.sender !== from) {
      this.components.log('refused a group message of %s forwarded by %s (copies come from their senders)', message.sender, from)
      return 'done'
    }
    const log = this.logs.get(message.group)
    const then = log?.stateAt(message.heads)
    if (log == null || then == null) {
      if (carrier.pendingRow == null) this.keepPending(message.group, from, carrier)
      return 'waiting'
    }
    const now = log.state
    if (!then.members.has(from) || !now.members.has(from)) {
      this.components.log('refused a group message of %s in group %s: not a member', from, message.group)
      return 'done'
    }
    if (!now.members.has(this.self)) return 'done'
    const m: GroupMessage = {
      groupId: message.group,
      id: message.id,
      from,
      seq: message.seq,
      lamport: message.lamport,
      body: message.body,
      contentType: message.contentType ?? DEFAULT_CONTENT_TYPE,
      sentAt: message.sentAt,
      receivedAt: carrier.receivedAt,
      path: carrier.path
    }
    const fresh = store.transaction(() => {
      store.groups.witness(m.groupId, m.lamport)
      return store.groups.addMessage({ group: m.groupId, sender: from, seq: m.seq, id: m.id, lamport: m.lamport, body: m.body, contentType: m.contentType, sentAt: m.sentAt, receivedAt: m.receivedAt, path: m.path })
    })
    if (fresh) this.dispatchEvent(new CustomEvent('group:message', { detail: m }))
    this.answerStale(log, from, message.heads)
    return 'done'
  }

  /** The sender wrote under heads older than this node's: it is sent the log, once per state of it. */
  private answerStale (log: MembershipLog, peer: string, heads: string[]): void {
    const known = log.ancestry(heads)
    if (known == null || known.size === log.size) return
    const key = `${log.id} ${peer} ${log.state.heads.join(',')}`
    if (this.answered.has(key)) return
    // a bound on what stale senders can make this node remember: past it, the next answers may repeat once
    if (this.answered.size >= MAX_ANSWERED) this.answered.clear()
    this.answered.add(key)
    this.components.store.transaction(() => this.fanOut([peer], { ops: log.all() }))
  }

  private keepPending (group: string, from: string, carrier: { bytes: Uint8Array, path: MessagePath, receivedAt: number }): void {
    const { groups } = this.components.store
    const unknown = !this.logs.has(group)
    if (unknown && groups.pendingGroups() >= MAX_PENDING_UNKNOWN_GROUPS && groups.pendingCount(group) === 0) {
      this.components.log('dropped a group message from %s: too many unknown groups wait', from)
      return
    }
    if (groups.pendingCount(group) >= MAX_PENDING_PER_GROUP) {
      this.components.log('dropped a group message from %s: %d already wait in group %s', from, MAX_PENDING_PER_GROUP, group)
      return
    }
    groups.addPending({ group, sender: from, path: carrier.path, receivedAt: carrier.receivedAt, payload: carrier.bytes })
  }

  private async retryPending (group: string): Promise<void> {
    const { groups } = this.components.store
    for (const p of groups.pending(group)) {
      const outcome = await this.handle(p.sender, p.payload, p.path as MessagePath, p.receivedAt, p.rowid)
      if (outcome === 'done') groups.deletePending(p.rowid)
    }
  }

  private changed (log: MembershipLog, ops: VerifiedOp[]): void {
    this.dispatchEvent(new CustomEvent('group:change', { detail: { ...this.info(log), ops: ops.map(o => o.kind) } }))
  }
}
