/**
 * The mailbox host: /parley/mailbox/1.0.0 as a libp2p service on the relay
 * (spec §5–§7). Requests are answered in order on each stream; `Open` turns
 * the stream into a session that pushes the owner's envelopes, at most a
 * window of them not yet deleted, and takes `Delete`s without answering.
 *
 * Every byte from a peer is bounded before it is used: frames (1 MiB, before
 * buffering), ids, peer IDs, ids per Delete (in the decoder), envelope sizes;
 * streams per connection, sessions in total, and idle streams time out.
 */
import { serviceCapabilities } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { addressGroups } from '../../common/address-groups.js'
import { Request, Response, StoredEnvelope } from '../../protocols/mailbox/pb/mailbox.js'
import {
  DEFAULT_WINDOW, MAILBOX_PROTOCOL, MAX_FRAME_BYTES, MAX_ID_BYTES, MAX_PEER_ID_BYTES, MAX_PUSH_ENVELOPES, MAX_WINDOW,
  readFrames, REQUEST_LIMITS, responseFrame, sendFrame
} from '../../protocols/mailbox/protocol.js'
import { checkEnvelopeSize, checkQuota, checkRegister, checkSession, DepositRateLimiter, grantedTtl, leaseExpiry } from './limits.js'
import type { MailboxLimits, Refusal } from './limits.js'
import type { MailboxStore, StoredEnvelopeRow } from './store.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { MailboxInfo } from '../../protocols/mailbox/pb/mailbox.js'
import type { ComponentLogger, Connection, Logger, Startable, Stream } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import type { Uint8ArrayList } from 'uint8arraylist'

/** The request kinds, for the metrics' labels. */
export type MailboxRequestKind = 'register' | 'deposit' | 'open' | 'delete' | 'invalid'

/** What the host reports to its operator (relay/metrics.ts implements it). */
export interface MailboxObserver {
  deposited(size: number): void
  refused(request: MailboxRequestKind, status: Response.Status): void
  expired(swept: { envelopes: number, mailboxes: number }): void
}

export interface MailboxServiceComponents {
  registrar: Registrar
  logger: ComponentLogger
}

export interface MailboxServiceInit {
  store: MailboxStore
  limits: MailboxLimits
  clock: Clock
  observer?: MailboxObserver
}

/** What a stream's reader returns: a frame, or the end of the stream. */
type Frames = AsyncIterator<Uint8ArrayList>

/** The end of a stream's use, before it is closed or aborted: the peer broke the protocol. */
class MailboxProtocolError extends Error {
  static override name = 'MailboxProtocolError'
  override name = 'MailboxProtocolError'
}

function refusal (r: Refusal): Partial<Response> {
  return { status: r.status, reason: r.reason, retryAfterMs: r.retryAfterMs }
}

const INVALID = (reason: string): Refusal => ({ status: Response.Status.INVALID, reason })

/** The request kind of a decoded request, or why it is not one (exactly one field must be set). */
function kindOf (request: Request): Exclude<MailboxRequestKind, 'invalid'> | undefined {
  const set = (['register', 'deposit', 'open', 'delete'] as const).filter(k => request[k] != null)
  return set.length === 1 ? set[0] : undefined
}

/** A peer ID from its multihash bytes, or undefined if they are not one (or not in canonical form). */
function peerIdOf (bytes: Uint8Array): string | undefined {
  if (bytes.byteLength === 0 || bytes.byteLength > MAX_PEER_ID_BYTES) return undefined
  try {
    const peer = peerIdFromString(uint8ArrayToString(bytes, 'base58btc'))
    return uint8ArrayEquals(peer.toMultihash().bytes, bytes) ? peer.toString() : undefined
  } catch {
    return undefined
  }
}

/**
 * One owner's open session: pushes envelopes up to the window, oldest first,
 * then new ones as they come; frees window as the owner deletes.
 */
class Session {
  /** Pushed and not yet deleted: id (hex) → when it expires (an expired one frees its slot). */
  private readonly unacked = new Map<string, number>()
  /** The deposit order of the last envelope pushed. */
  private lastSeq = 0
  private pumping = false
  private again = false
  closed = false

  constructor (
    readonly owner: Uint8Array,
    private readonly stream: Stream,
    private readonly window: number,
    private readonly host: MailboxService
  ) {}

  /** Pushes what the window allows; called on open, after each Delete and on each deposit to the mailbox. */
  wake (): void {
    if (this.closed) return
    if (this.pumping) {
      this.again = true
      return
    }
    this.pumping = true
    this.pump().catch(err => { this.end(err) })
  }

  /** The owner deleted these ids (hex). */
  deleted (ids: string[]): void {
    for (const id of ids) this.unacked.delete(id)
    this.wake()
  }

  end (err?: Error): void {
    if (this.closed) return
    this.closed = true
    this.host.sessionEnded(this)
    if (err != null) this.stream.abort(err)
    else this.stream.close().catch(e => { this.stream.abort(e) })
  }

  private async pump (): Promise<void> {
    try {
      do {
        this.again = false
        const now = this.host.now()
        for (const [id, expiresAt] of this.unacked) {
          if (expiresAt <= now) this.unacked.delete(id)
        }
        while (!this.closed && this.unacked.size < this.window) {
          const rows = this.host.store.list(this.owner, this.lastSeq, Math.min(MAX_PUSH_ENVELOPES, this.window - this.unacked.size), now)
          if (rows.length === 0) break
          await sendFrame(this.stream, responseFrame({ status: Response.Status.OK, envelopes: this.batch(rows) }))
        }
      } while (this.again && !this.closed)
    } finally {
      // in the same turn as the last look at `again`: no wake falls in between
      this.pumping = false
    }
  }

  /** As many of `rows` as fit in one frame (the rest go in the next), counted as pushed. */
  private batch (rows: StoredEnvelopeRow[]): StoredEnvelope[] {
    const batch: StoredEnvelope[] = []
    let size = 16
    for (const row of rows) {
      const entry: StoredEnvelope = { id: row.id, storedAt: BigInt(row.storedAt), expiresAt: BigInt(row.expiresAt), envelope: row.envelope }
      // the entry, its field tag and its length prefix
      const entrySize = StoredEnvelope.encode(entry).byteLength + 6
      if (batch.length > 0 && size + entrySize > MAX_FRAME_BYTES) break
      batch.push(entry)
      size += entrySize
      this.lastSeq = row.seq
      this.unacked.set(uint8ArrayToString(row.id, 'base16'), row.expiresAt)
    }
    return batch
  }
}

/**
 * The /parley/mailbox/1.0.0 host. Not served on limited (relayed)
 * connections: the host is the relay itself, clients reach it directly.
 */
export class MailboxService implements Startable {
  readonly protocol = MAILBOX_PROTOCOL
  readonly store: MailboxStore
  private readonly limits: MailboxLimits
  private readonly clock: Clock
  private readonly observer?: MailboxObserver
  private readonly rate: DepositRateLimiter
  private readonly log: Logger
  /** Open sessions by owner peer ID (string). */
  private readonly sessions = new Map<string, Session>()
  private started = false

  constructor (private readonly components: MailboxServiceComponents, init: MailboxServiceInit) {
    this.store = init.store
    this.limits = init.limits
    this.clock = init.clock
    this.observer = init.observer
    this.rate = new DepositRateLimiter(init.limits)
    this.log = components.logger.forComponent('parley:relay:mailbox')
    this.handleStream = this.handleStream.bind(this)
  }

  readonly [Symbol.toStringTag] = 'parley/mailbox-host'

  readonly [serviceCapabilities]: string[] = ['parley/mailbox-host']

  async start (): Promise<void> {
    await this.components.registrar.handle(MAILBOX_PROTOCOL, this.handleStream, {
      maxInboundStreams: this.limits.maxStreamsPerConnection,
      maxOutboundStreams: 1,
      runOnLimitedConnection: false
    })
    this.store.startSweeping(this.limits.sweepInterval, swept => {
      if (swept.envelopes > 0 || swept.mailboxes > 0) this.log('swept %d expired envelopes, %d expired mailboxes', swept.envelopes, swept.mailboxes)
      this.observer?.expired(swept)
    })
    this.started = true
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(MAILBOX_PROTOCOL)
    for (const session of [...this.sessions.values()]) session.end()
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  /** Open sessions now. */
  get openSessions (): number {
    return this.sessions.size
  }

  /** @internal */
  now (): number {
    return this.clock.now()
  }

  /** @internal a session ended: forget it, unless a newer one replaced it. */
  sessionEnded (session: Session): void {
    const key = uint8ArrayToString(session.owner, 'base16')
    if (this.sessions.get(key) === session) this.sessions.delete(key)
  }

  /** Serves one stream: requests in order, until it ends, idles out, or becomes a session. */
  private async handleStream (stream: Stream, connection: Connection): Promise<void> {
    // the registrar does not hand limited connections to this handler; a host
    // asked over one anyway answers nothing
    if (connection.limits != null) {
      stream.abort(new MailboxProtocolError('mailboxes are not served over relayed connections'))
      return
    }
    const frames = readFrames(stream)[Symbol.asyncIterator]()
    let idle: ClockTimer | undefined
    const armIdle = (): void => {
      this.clock.clearTimeout(idle)
      idle = this.clock.setTimeout(() => {
        // our side ends gracefully; a peer that keeps its own open (or sits in
        // the middle of a frame) is reset one more timeout later
        stream.close().catch(err => { stream.abort(err) })
        idle = this.clock.setTimeout(() => {
          stream.abort(new DOMException(`no request within ${this.limits.idleTimeout} ms`, 'TimeoutError'))
        }, this.limits.idleTimeout)
      }, this.limits.idleTimeout)
    }
    try {
      for (;;) {
        // the timer runs until the next request is read and answered: a peer
        // that stops reading its answers idles out too
        armIdle()
        const next = await frames.next()
        if (next.done === true) break
        // after the idle timeout closed our side nothing more is acted on: a
        // request that cannot be answered must not have been carried out, and
        // the client, seeing the stream end unanswered, sends it again elsewhere
        if (stream.writeStatus !== 'writable') continue
        let request: Request
        try {
          request = Request.decode(next.value, REQUEST_LIMITS)
        } catch (err: any) {
          // the framing holds but the message does not: answer, then end the stream
          this.observer?.refused('invalid', Response.Status.INVALID)
          await sendFrame(stream, responseFrame(refusal(INVALID(`undecodable request: ${String(err.message)}`))))
          break
        }
        const kind = kindOf(request)
        if (kind === 'delete') {
          // a Delete is the owner's, within its session: outside one it names no mailbox to act on
          this.observer?.refused('delete', Response.Status.FORBIDDEN)
          await sendFrame(stream, responseFrame({ status: Response.Status.FORBIDDEN, reason: 'Delete is only for the owner, within its Open session' }))
          continue
        }
        if (kind === 'open') {
          const session = await this.open(stream, connection, request.open?.window ?? 0)
          if (session != null) {
            // a session is quiet for as long as nothing is deposited: no idle timeout
            this.clock.clearTimeout(idle)
            await this.serveSession(session, frames)
            return
          }
          continue
        }
        const response = kind === 'register'
          ? this.register(connection)
          : kind === 'deposit'
            ? this.deposit(connection, request.deposit as NonNullable<Request['deposit']>)
            : refusal(INVALID('a request must carry exactly one of register, deposit, open, delete'))
        if (response.status !== Response.Status.OK) this.observer?.refused(kind ?? 'invalid', response.status ?? Response.Status.INVALID)
        await sendFrame(stream, responseFrame(response))
      }
      await stream.close()
    } catch (err: any) {
      this.log('mailbox stream from %p ended - %e', connection.remotePeer, err)
      stream.abort(err)
    } finally {
      this.clock.clearTimeout(idle)
    }
  }

  private info (owner: Uint8Array, expiresAt: number): MailboxInfo {
    const usage = this.store.usage(owner)
    return {
      envelopes: usage.envelopes,
      bytes: BigInt(usage.bytes),
      maxEnvelopes: this.limits.maxEnvelopesPerMailbox,
      maxBytes: BigInt(this.limits.maxBytesPerMailbox),
      expiresAt: BigInt(expiresAt)
    }
  }

  private register (connection: Connection): Partial<Response> {
    const owner = connection.remotePeer.toMultihash().bytes
    const now = this.clock.now()
    const exists = this.store.mailbox(owner, now) != null
    const refused = checkRegister(exists, this.store.held.mailboxes, this.limits)
    if (refused != null) return refusal(refused)
    const expiresAt = leaseExpiry(now, this.limits)
    this.store.register(owner, now, expiresAt)
    return { status: Response.Status.OK, info: this.info(owner, this.store.mailbox(owner, now)?.expiresAt ?? expiresAt) }
  }

  private deposit (connection: Connection, deposit: NonNullable<Request['deposit']>): Partial<Response> {
    const mailboxPeer = peerIdOf(deposit.mailbox)
    if (mailboxPeer == null) return refusal(INVALID('Deposit.mailbox is not a peer ID'))
    const size = deposit.envelope.byteLength
    const refused = checkEnvelopeSize(size, this.limits) ??
      this.rate.take(connection.remotePeer.toString(), addressGroups(connection.remoteAddr)?.ip, this.clock.now())
    if (refused != null) return refusal(refused)

    const now = this.clock.now()
    const mailbox = this.store.mailbox(deposit.mailbox, now)
    if (mailbox == null) return refusal({ status: Response.Status.NO_SUCH_MAILBOX, reason: 'no mailbox is registered for that peer here' })
    const depositor = this.store.depositorTag(deposit.mailbox, connection.remotePeer.toMultihash().bytes)
    const full = checkQuota(size, this.store.usage(deposit.mailbox), this.store.depositorUsage(deposit.mailbox, depositor), this.limits)
    if (full != null) return refusal(full)

    const expiresAt = now + grantedTtl(deposit.ttlMs, this.limits)
    const { id } = this.store.deposit({ mailbox: deposit.mailbox, envelope: deposit.envelope, storedAt: now, expiresAt, depositor })
    this.observer?.deposited(size)
    this.sessions.get(uint8ArrayToString(deposit.mailbox, 'base16'))?.wake()
    return { status: Response.Status.OK, id, expiresAt: BigInt(expiresAt) }
  }

  /** Answers an Open; on OK returns the new session (which replaced any older one of the owner). */
  private async open (stream: Stream, connection: Connection, requestedWindow: number): Promise<Session | undefined> {
    const owner = connection.remotePeer.toMultihash().bytes
    const key = uint8ArrayToString(owner, 'base16')
    const now = this.clock.now()
    let refused: Refusal | undefined
    if (this.store.mailbox(owner, now) == null) refused = { status: Response.Status.NO_SUCH_MAILBOX, reason: 'register a mailbox first' }
    refused ??= checkSession(this.sessions.has(key), this.sessions.size, this.limits)
    if (refused != null) {
      this.observer?.refused('open', refused.status)
      await sendFrame(stream, responseFrame(refusal(refused)))
      return undefined
    }
    // opening renews the lease, as registering does
    this.store.register(owner, now, leaseExpiry(now, this.limits))
    const window = requestedWindow === 0 ? DEFAULT_WINDOW : Math.min(requestedWindow, MAX_WINDOW)
    this.sessions.get(key)?.end()
    const session = new Session(owner, stream, window, this)
    this.sessions.set(key, session)
    await sendFrame(stream, responseFrame({ status: Response.Status.OK, info: this.info(owner, this.store.mailbox(owner, now)?.expiresAt ?? now) }))
    return session
  }

  /** Reads the session's Deletes until the owner closes it, breaks the protocol, or a newer session replaces it. */
  private async serveSession (session: Session, frames: Frames): Promise<void> {
    session.wake()
    try {
      for (;;) {
        const next = await frames.next()
        if (next.done === true || session.closed) break
        let request: Request
        try {
          request = Request.decode(next.value, REQUEST_LIMITS)
        } catch (err: any) {
          throw new MailboxProtocolError(`undecodable request in a session: ${String(err.message)}`)
        }
        if (kindOf(request) !== 'delete') throw new MailboxProtocolError('only Delete may follow Open')
        const ids = request.delete?.ids ?? []
        if (ids.some(id => id.byteLength === 0 || id.byteLength > MAX_ID_BYTES)) throw new MailboxProtocolError('a Delete id is not an envelope id')
        this.store.delete(session.owner, ids)
        session.deleted(ids.map(id => uint8ArrayToString(id, 'base16')))
      }
      session.end()
    } catch (err: any) {
      session.end(err)
    }
  }
}

/** The mailbox host for the relay's `services`. */
export function mailboxService (init: MailboxServiceInit): (components: MailboxServiceComponents) => MailboxService {
  return (components) => new MailboxService(components, init)
}
