/**
 * Leaves messages sealed in their recipient's mailbox: seals each /im
 * ChatMessage to the recipient's current mailbox key and deposits it on the
 * recipient's hosts (several, in parallel), in seq order on each host. A
 * message is stored once one host confirmed it; the outbox keeps trying
 * direct delivery either way.
 */
import { systemClock } from '../../common/clock.js'
import { ChatMessage } from '../../protocols/im/pb/im.js'
import { DEFAULT_CONTENT_TYPE, GROUP_PROTOCOL } from '../../protocols/im/index.js'
import { idFromString } from '../message-id.js'
import { sealingKey } from './directory.js'
import type { MailboxDirectory, VerifiedRecord } from './directory.js'
import type { Clock } from '../../common/clock.js'
import type { Depositor, DepositOptions } from '../outbox/delivery.js'
import type { OutboxEntry } from '../store/index.js'
import type { AbortOptions, ComponentLogger, Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** What a sealed envelope carries: a ChatMessage (encoded), or a receipt for messages that came through our mailbox. */
export type MailboxContent = { message: Uint8Array } | { receipt: Array<{ id: Uint8Array, status: number }> }

/** A mailbox host, and where to dial it. */
export interface MailboxHost { peerId: PeerId, addrs: Multiaddr[] }

/** What the depositor needs of the mailbox protocol's client. */
export interface DepositTransport {
  /** Deposits envelopes in `mailbox` on `host`, in order on one stream, each kept for `ttlMs` at most (none: the host's default): per envelope, until when the host keeps it or the error it answered. Throws when the host cannot be reached. */
  depositMany(host: MailboxHost, mailbox: PeerId, envelopes: ReadonlyArray<{ envelope: Uint8Array, ttlMs?: number }>, options: AbortOptions): Promise<Array<{ expiresAt: number } | Error>>
}

export interface MailboxDepositorComponents {
  directory: Pick<MailboxDirectory, 'get'>
  transport: DepositTransport
  /** Seals `content` for `recipient` with its mailbox key (signed by this node, with this node's own record to answer to). */
  seal: (recipient: PeerId, recipientKey: Uint8Array, content: MailboxContent) => Promise<Uint8Array>
  /** Parses a peer ID string (the outbox names peers by string). */
  peerId: (peer: string) => PeerId
  logger: ComponentLogger
  /** @default systemClock */
  clock?: Pick<Clock, 'now'>
}

export interface MailboxDepositorInit {
  /**
   * Hosts of one recipient deposited on at most.
   *
   * @default 3
   */
  maxHosts?: number
}

/** Envelopes sealed at once. */
const SEAL_CONCURRENCY = 16

/** The message as it goes on the wire, for sealing. */
function chatMessage (entry: OutboxEntry): Uint8Array {
  return ChatMessage.encode({
    id: idFromString(entry.id),
    seq: BigInt(entry.seq),
    sentAt: BigInt(entry.sentAt),
    body: entry.body,
    contentType: entry.contentType === DEFAULT_CONTENT_TYPE ? undefined : entry.contentType,
    replyTo: entry.replyTo == null ? undefined : idFromString(entry.replyTo),
    group: entry.group as Uint8Array<ArrayBuffer> | undefined
  })
}

export class MailboxDepositor implements Depositor {
  private readonly components: MailboxDepositorComponents
  private readonly clock: Pick<Clock, 'now'>
  private readonly log: Logger
  private readonly maxHosts: number

  constructor (components: MailboxDepositorComponents, init: MailboxDepositorInit = {}) {
    this.components = components
    this.clock = components.clock ?? systemClock
    this.log = components.logger.forComponent('parley:mailbox:deposit')
    this.maxHosts = init.maxHosts ?? 3
  }

  async deposit (peer: string, all: readonly OutboxEntry[], options: Partial<DepositOptions> = {}): Promise<Array<{ id: string, until: number }>> {
    const { record, key } = await this.recordOf(peer, options)
    // a recipient whose record does not say it reads group carriers would show one as an empty message: they wait for a stream
    const entries = record.reads?.includes(GROUP_PROTOCOL) === true ? all : all.filter(e => e.group == null)
    if (entries.length === 0) return []
    const recipient = this.components.peerId(peer)
    const now = this.clock.now()
    // sealed a few at a time: WebCrypto's X25519 and the signature run on libuv's threads
    const sealed: Array<{ id: string, envelope: Uint8Array, ttlMs?: number }> = []
    for (let i = 0; i < entries.length; i += SEAL_CONCURRENCY) {
      sealed.push(...await Promise.all(entries.slice(i, i + SEAL_CONCURRENCY).map(async entry => ({
        id: entry.id,
        envelope: await this.components.seal(recipient, key, { message: chatMessage(entry) }),
        // kept no longer than the sender keeps trying: past that it has failed as expired
        ttlMs: options.expiresAt == null ? undefined : Math.max(1, options.expiresAt(entry) - now)
      }))))
    }
    this.log('sealed %d for %s in %d ms', sealed.length, peer, this.clock.now() - now)
    // each host gets them in seq order; the hosts at once
    const until = new Map<string, number>()
    const errors: string[] = []
    await Promise.all(record.hosts.slice(0, this.maxHosts).map(async host => {
      let results: Array<{ expiresAt: number } | Error>
      try {
        const started = this.clock.now()
        results = await this.components.transport.depositMany(host, recipient, sealed, { signal: options.signal })
        this.log('host %p answered %d deposits for %s in %d ms', host.peerId, results.length, peer, this.clock.now() - started)
      } catch (err: any) {
        errors.push(`${host.peerId.toString()}: ${err.message as string}`)
        this.log('mailbox host %p of %s failed - %s', host.peerId, peer, err.message)
        return
      }
      results.forEach((result, i) => {
        if (result instanceof Error) {
          // a full mailbox or a rate limit: what it refused is deposited again at a later round
          errors.push(`${host.peerId.toString()}: ${result.message}`)
          return
        }
        const { id } = sealed[i]
        until.set(id, Math.max(until.get(id) ?? 0, result.expiresAt))
      })
      if (results.some(result => result instanceof Error)) this.log('mailbox host %p of %s refused some - %s', host.peerId, peer, errors.at(-1))
    }))
    if (until.size === 0) throw new Error(`no mailbox host of ${peer} took the messages (${errors.join('; ')})`)
    return sealed.flatMap(({ id }) => until.has(id) ? [{ id, until: until.get(id) ?? 0 }] : [])
  }

  /**
   * Tells `peer` (a sender whose messages came through our mailbox) how they
   * were answered, through its own mailbox. Throws when no host took it.
   */
  async depositReceipt (peer: string, answers: Array<{ id: Uint8Array, status: number }>, options: AbortOptions = {}): Promise<boolean> {
    const { record, key } = await this.recordOf(peer, options)
    const recipient = this.components.peerId(peer)
    const envelope = await this.components.seal(recipient, key, { receipt: answers })
    const results = await Promise.all(record.hosts.slice(0, this.maxHosts).map(async host => {
      try {
        const [result] = await this.components.transport.depositMany(host, recipient, [{ envelope }], options)
        return result
      } catch (err: any) {
        return err as Error
      }
    }))
    if (results.some(result => !(result instanceof Error))) return true
    throw new Error(`no mailbox host of ${peer} took the receipt (${results.map(r => r instanceof Error ? r.message : '').join('; ')})`)
  }

  private async recordOf (peer: string, options: AbortOptions): Promise<{ record: VerifiedRecord, key: Uint8Array }> {
    const record = await this.components.directory.get(peer, options)
    const key = record == null ? undefined : sealingKey(record, this.clock.now())
    if (record == null || key == null) throw new Error(`${peer} has no mailbox that this node knows of`)
    if (record.hosts.length === 0) throw new Error(`${peer}'s mailbox record names no host`)
    return { record, key }
  }
}
