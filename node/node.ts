import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { raceSignal } from 'race-signal'
import { parse as parseUuid, stringify as uuidToString, v7 as uuidv7 } from 'uuid'
import { openDatastore } from '../common/datastore.js'
import { loadIdentity } from '../common/identity.js'
import { Ack, ID_BYTES, MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES, DEFAULT_CONTENT_TYPE, utf8Length } from '../protocols/im/index.js'
import { resolveNodeConfig } from './config.js'
import {
  DeliveryTimeoutError, EmptyMessageError, InvalidMessageError, InvalidPeerIdError, MessageRejectedError,
  MessageTooLargeError, NodeStoppedError
} from './errors.js'
import { createNodeLibp2p } from './libp2p.js'
import { PathUpgrader } from './paths.js'
import { Router } from './router.js'
import type { NodeConfig, ResolvedNodeConfig } from './config.js'
import type { NodeLibp2p } from './libp2p.js'
import type { PathChange } from './paths.js'
import type { InboundMessage, OutboundMessage, Path, StoreResult } from '../protocols/im/index.js'
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

export interface SendOptions extends AbortOptions {
  /** @default 'text/plain' */
  contentType?: string
  /** UUID of an earlier message in the conversation this one answers. */
  replyTo?: string
  /** Give up after this many ms. @default the node's `sendTimeout` */
  timeout?: number
}

/** What `send` resolves with once the recipient acknowledged the message. */
export interface Receipt {
  id: string
  status: 'delivered'
  path: Path
}

export interface ParleyNodeEvents {
  message: CustomEvent<ReceivedMessage>
  'path:change': CustomEvent<PathChange>
}

/** Back-off between delivery attempts: full jitter, doubling from 250 ms up to 5 s. */
function backoff (attempt: number): number {
  return Math.random() * Math.min(5_000, 250 * 2 ** attempt)
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await raceSignal(new Promise(resolve => setTimeout(resolve, ms)), signal)
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

function parseMessageId (id: string, field: string): Uint8Array<ArrayBuffer> {
  try {
    const bytes = parseUuid(id)
    if (bytes.byteLength === ID_BYTES) return new Uint8Array(bytes)
  } catch {}
  throw new InvalidMessageError(`${field} "${id}" is not a message id (a UUID)`)
}

/**
 * A parley node: sends messages to peers by peer ID, picks the path (direct or
 * relayed) by itself and reports which, and emits the messages it receives.
 */
export class ParleyNode extends TypedEventEmitter<ParleyNodeEvents> {
  readonly peerId: PeerId
  readonly libp2p: NodeLibp2p
  private readonly log: Logger
  private readonly router: Router
  private readonly paths: PathUpgrader
  private readonly nextSeq = new Map<string, number>()
  private readonly received = new Set<string>()
  private readonly controller = new AbortController()
  private stopped = false

  constructor (
    libp2p: NodeLibp2p,
    private readonly config: ResolvedNodeConfig,
    private readonly closeDatastore: () => Promise<void>
  ) {
    super()
    this.libp2p = libp2p
    this.peerId = libp2p.peerId
    this.log = libp2p.logger.forComponent('parley:node')
    this.router = new Router(libp2p, libp2p.logger.forComponent('parley:router'))
    this.paths = new PathUpgrader(libp2p, libp2p.logger.forComponent('parley:paths'))
    this.paths.addEventListener('path:change', (evt) => {
      this.dispatchEvent(new CustomEvent('path:change', { detail: evt.detail }))
    })
    this.paths.start()
  }

  /** The addresses this node can be reached at, relay circuit addresses included. */
  get multiaddrs (): Multiaddr[] {
    return this.libp2p.getMultiaddrs()
  }

  /** The best open path to a peer right now, if connected. */
  pathTo (peer: PeerId | string): Path | undefined {
    return this.paths.pathTo(parsePeer(peer))
  }

  /**
   * Sends `body` to `peer` and resolves once the recipient acknowledged it,
   * with the path the acknowledged copy took. Retries with back-off on any
   * transient failure until `timeout` (or `signal`) ends it.
   */
  async send (peer: PeerId | string, body: string, options: SendOptions = {}): Promise<Receipt> {
    if (this.stopped) {
      throw new NodeStoppedError('the node is stopped; start a new one to send')
    }
    const to = parsePeer(peer)
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

    const id = uuidv7()
    const conversation = to.toString()
    const seq = (this.nextSeq.get(conversation) ?? 0) + 1
    this.nextSeq.set(conversation, seq)
    const message: OutboundMessage = {
      id: parseMessageId(id, 'id'),
      seq,
      sentAt: Date.now(),
      body,
      contentType: options.contentType,
      replyTo: options.replyTo == null ? undefined : parseMessageId(options.replyTo, 'replyTo')
    }
    const path = await this.deliver(to, message, options)
    return { id, status: 'delivered', path }
  }

  private async deliver (to: PeerId, message: OutboundMessage, options: SendOptions): Promise<Path> {
    const timeout = options.timeout ?? this.config.sendTimeout
    const signal = AbortSignal.any([
      this.controller.signal,
      AbortSignal.timeout(timeout),
      ...(options.signal == null ? [] : [options.signal])
    ])
    let lastError: Error | undefined

    for (let attempt = 0; ; attempt++) {
      try {
        const connection = await this.router.connect(to, { signal })
        const ack = await this.libp2p.services.im.send(connection, message, { signal })
        switch (ack.status) {
          case Ack.Status.OK:
          case Ack.Status.DUPLICATE:
            return ack.path
          case Ack.Status.RATE_LIMITED:
            lastError = new Error('the recipient is rate limiting this node')
            await sleep(ack.retryAfterMs ?? backoff(attempt), signal)
            continue
          default:
            throw new MessageRejectedError(`the recipient refused the message (${ack.status})`, ack.status)
        }
      } catch (err: any) {
        if (err.name === 'MessageRejectedError') {
          throw err
        }
        if (signal.aborted) {
          if (this.stopped) {
            throw new NodeStoppedError('the node stopped before the message was acknowledged')
          }
          throw new DeliveryTimeoutError(`${to.toString()} did not acknowledge the message within ${timeout} ms or before the send was aborted (last error: ${(lastError ?? err).message})`, { cause: lastError ?? err })
        }
        lastError = err
        this.log('attempt %d to deliver to %p failed - %e', attempt + 1, to, err)
      }
      try {
        await sleep(backoff(attempt), signal)
      } catch {
        // the loop's next round reports the timeout
      }
    }
  }

  /** Called by the /im service for every valid message, before it acks. */
  async store (message: InboundMessage): Promise<StoreResult> {
    const id = uuidToString(message.id)
    const key = `${message.from.toString()}/${id}`
    if (this.received.has(key)) {
      return 'duplicate'
    }
    this.received.add(key)
    this.dispatchEvent(new CustomEvent('message', {
      detail: {
        id,
        from: message.from.toString(),
        seq: message.seq,
        body: message.body,
        contentType: message.contentType,
        sentAt: message.sentAt,
        receivedAt: Date.now(),
        path: message.path,
        replyTo: message.replyTo == null ? undefined : uuidToString(message.replyTo)
      }
    }))
    return 'stored'
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.controller.abort()
    this.paths.stop()
    await this.libp2p.stop()
    await this.closeDatastore()
  }
}

/** Starts a parley node. Without `dataDir` everything is in memory. */
export async function createNode (config: NodeConfig = {}): Promise<ParleyNode> {
  const resolved = resolveNodeConfig(config)
  const privateKey = await loadIdentity(resolved.dataDir)
  const { datastore, close } = await openDatastore(resolved.dataDir)
  let node: ParleyNode | undefined
  try {
    const libp2p = await createNodeLibp2p(resolved, privateKey, datastore, {
      store: async (message) => {
        if (node == null) throw new Error('the node is still starting')
        return node.store(message)
      }
    })
    node = new ParleyNode(libp2p, resolved, close)
    return node
  } catch (err) {
    await close()
    throw err
  }
}
