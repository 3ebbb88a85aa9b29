import { serviceCapabilities } from '@libp2p/interface'
import {
  ACK_TIMEOUT_MS, GROUP_PROTOCOL, IDLE_TIMEOUT_MS, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, MAX_UNACKED, PROTOCOL
} from './constants.js'
import { InboundStream } from './inbound.js'
import { OutboundChannel } from './outbound.js'
import { pathOf } from './path.js'
import { Ack } from './pb/im.js'
import type { ChatMessage } from './pb/im.js'
import type { Acknowledgement, ImComponents, ImInit, ImService as ImServiceInterface, OutboundMessage } from './index.js'
import type { AbortOptions, Connection, Logger, Startable, Stream } from '@libp2p/interface'

/**
 * The /im/1.0.0 service: answers inbound message streams with acks and sends
 * messages on a reused, pipelined outbound stream per connection.
 */
export class DefaultImService implements Startable, ImServiceInterface {
  readonly protocol = PROTOCOL
  private readonly log: Logger
  private readonly channels = new Map<string, Promise<OutboundChannel>>()
  /** The channels of `channels` that are open, by connection: what `sendAtOnce` writes to. */
  private readonly ready = new Map<string, OutboundChannel>()
  /** Sends on their way to each connection's channel, not in it yet. */
  private readonly starting = new Map<string, number>()
  private readonly maxUnacked: number
  private readonly ackTimeout: number
  private readonly idleTimeout: number
  private readonly maxInboundStreams: number
  private readonly maxOutboundStreams: number
  private readonly runOnLimitedConnection: boolean
  private started = false

  constructor (private readonly components: ImComponents, private readonly init: ImInit) {
    this.log = components.logger.forComponent('parley:im')
    this.maxUnacked = init.maxUnacked ?? MAX_UNACKED
    this.ackTimeout = init.ackTimeout ?? ACK_TIMEOUT_MS
    this.idleTimeout = init.idleTimeout ?? IDLE_TIMEOUT_MS
    this.maxInboundStreams = init.maxInboundStreams ?? MAX_INBOUND_STREAMS
    this.maxOutboundStreams = init.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS
    this.runOnLimitedConnection = init.runOnLimitedConnection ?? true
    this.handleStream = this.handleStream.bind(this)
  }

  readonly [Symbol.toStringTag] = 'parley/im'

  readonly [serviceCapabilities]: string[] = ['parley/im']

  async start (): Promise<void> {
    // one handler for both versions: 1.1.0 is 1.0.0 plus the `group` field, which the handler accepts only on 1.1.0 streams
    for (const protocol of [PROTOCOL, GROUP_PROTOCOL]) {
      await this.components.registrar.handle(protocol, this.handleStream, {
        maxInboundStreams: this.maxInboundStreams,
        maxOutboundStreams: this.maxOutboundStreams,
        runOnLimitedConnection: this.runOnLimitedConnection
      })
    }
    this.started = true
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(PROTOCOL)
    await this.components.registrar.unhandle(GROUP_PROTOCOL)
    for (const channel of this.channels.values()) {
      channel.then(c => { c.close() }, () => {})
    }
    this.channels.clear()
    this.ready.clear()
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  async send (connection: Connection, message: OutboundMessage, options: AbortOptions = {}): Promise<Acknowledgement> {
    this.starting.set(connection.id, (this.starting.get(connection.id) ?? 0) + 1)
    let channel: OutboundChannel
    try {
      channel = await this.channelFor(connection, options)
    } finally {
      // the channel takes the message in the same tick as this (`channel.send`)
      const left = (this.starting.get(connection.id) ?? 1) - 1
      if (left === 0) this.starting.delete(connection.id)
      else this.starting.set(connection.id, left)
    }
    if (message.group != null && channel.protocol !== GROUP_PROTOCOL) {
      // the peer speaks only /im/1.0.0 and would show it as an empty one-to-one message: it is never sent
      return { id: message.id, status: Ack.Status.INVALID, path: pathOf(connection), connection }
    }
    return acknowledgement(await channel.send(chatMessage(message), options), connection)
  }

  sendAtOnce (connection: Connection, message: OutboundMessage, options: AbortOptions = {}): Promise<Acknowledgement> | undefined {
    const channel = this.ready.get(connection.id)
    // it would overtake a send that has not reached the channel yet; a group
    // message to a peer that may speak only /im/1.0.0 is for `send` to answer
    if (channel == null || this.starting.has(connection.id) || (message.group != null && channel.protocol !== GROUP_PROTOCOL)) return undefined
    return channel.sendNow(chatMessage(message), options)?.then(ack => acknowledgement(ack, connection))
  }

  /** Reuses the connection's open stream, or opens one; concurrent callers share it. */
  private async channelFor (connection: Connection, options: AbortOptions): Promise<OutboundChannel> {
    const existing = this.channels.get(connection.id)
    if (existing != null) {
      const channel = await existing.catch(() => undefined)
      if (channel?.open === true) {
        return channel
      }
      if (this.channels.get(connection.id) === existing) {
        this.channels.delete(connection.id)
      }
    }

    // the newest version the peer speaks: multistream-select takes the first it knows
    const opening = connection.newStream([GROUP_PROTOCOL, PROTOCOL], {
      ...options,
      runOnLimitedConnection: this.runOnLimitedConnection
    }).then(stream => {
      const channel: OutboundChannel = new OutboundChannel(stream, {
        maxUnacked: this.maxUnacked,
        ackTimeout: this.ackTimeout,
        idleTimeout: this.idleTimeout,
        log: this.log,
        onEnd: () => {
          if (this.channels.get(connection.id) === opening) {
            this.channels.delete(connection.id)
          }
          // (called from the constructor when the stream is closed already)
          if (this.ready.get(connection.id)?.open === false) {
            this.ready.delete(connection.id)
          }
        }
      })
      if (channel.open) this.ready.set(connection.id, channel)
      return channel
    })
    this.channels.set(connection.id, opening)
    opening.catch(() => {
      if (this.channels.get(connection.id) === opening) {
        this.channels.delete(connection.id)
      }
    })
    return opening
  }

  /** Serves one inbound stream: see InboundStream. */
  private async handleStream (stream: Stream, connection: Connection): Promise<void> {
    await new InboundStream(stream, connection, {
      handlers: this.init,
      maxUnacked: this.maxUnacked,
      ackTimeout: this.ackTimeout,
      idleTimeout: this.idleTimeout,
      log: this.log
    }).run()
  }
}

function chatMessage (message: OutboundMessage): ChatMessage {
  return {
    id: message.id,
    seq: BigInt(message.seq),
    sentAt: BigInt(message.sentAt),
    body: message.body,
    contentType: message.contentType,
    replyTo: message.replyTo,
    group: message.group
  }
}

function acknowledgement (ack: Ack, connection: Connection): Acknowledgement {
  return { id: ack.id, status: ack.status, retryAfterMs: ack.retryAfterMs, path: pathOf(connection), connection }
}
