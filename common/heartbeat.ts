/**
 * Finds dead connections, in place of libp2p's connection monitor (which
 * parley nodes and relays turn off).
 *
 * libp2p's monitor pings every connection every `pingInterval` over the ping
 * protocol: a new stream each time, with its protocol negotiation, and the
 * peer pays the same to answer. A relay answers one such ping per client per
 * interval: thousands of reservations made it spend most of its idle CPU on
 * them (BENCHMARKS.md, "Relay at scale").
 *
 * This heartbeat asks the connection's stream muxer instead when it can ping
 * (yamux, on TCP and WebSockets connections and on circuits: a 12-byte PING
 * frame the peer's muxer answers itself, no stream, no negotiation), and the
 * ping protocol otherwise (WebRTC). A connection that does not answer within
 * `timeout` is aborted: what was written on it fails at once and goes another
 * way, and a relay's reservation is made again (node/network/reservations.ts).
 *
 * Liveness is passive first: a connection that received anything (a frame of
 * any stream, a PING of the peer's own heartbeat included) within its
 * interval is alive and is not pinged. Only a silent connection is. The muxer
 * notes when its connection last received anything (`hearing` below: one
 * field write per chunk read, no timer per connection), and one timer looks
 * at every connection each `checkEvery`. So the two ends of a connection do
 * not both ping it: the end with the shorter interval pings, and the other
 * hears those pings and stays quiet. That is what keeps a relay's idle cost
 * flat: its clients ping it, it pings none of them (relay/relay.ts). What the
 * quiet end learns is that the peer still sends; a connection that carries
 * nothing back to the peer is found by the peer, whose pings then go
 * unanswered.
 *
 * A connection that goes silent is found dead within
 * `interval + checkEvery / 2 + timeout` of the last thing it received (its
 * silence passes `interval - checkEvery / 2` just after a look, is seen at the
 * next, and the ping then waits out its timeout): 25 s for a parley node's
 * default heartbeatInterval of 10 s.
 */
import { byteStream } from '@libp2p/utils'
import { systemClock, timeoutSignal } from './clock.js'
import type { Clock, ClockTimer } from './clock.js'
import type { AbortOptions, ComponentLogger, Connection, Libp2pEvents, Logger, MessageStream, Startable, StreamMuxer, StreamMuxerFactory, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'

/** libp2p's ping protocol, which every libp2p node answers. */
export const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_LENGTH = 32

/**
 * The shortest a ping is given (libp2p's connection monitor gave at least
 * 5 s too): a busy peer or a slow mobile link answers a ping late without
 * being dead, and a short interval must not make its connection look so.
 */
export const MIN_HEARTBEAT_TIMEOUT = 5_000

/** How long after it opens a connection that only a stream can ping (WebRTC) is first pinged, in ms (see `onConnectionOpen`). */
export const FIRST_STREAM_PING_DELAY = 1_000

export interface HeartbeatInit {
  /**
   * A connection that received nothing for this long is pinged, in ms: a
   * silent connection is so pinged once per interval, a busy one never.
   *
   * @default 10000
   */
  interval?: number
  /**
   * How often every connection's silence is looked at, in ms. A silence is
   * counted to the nearest look (a connection is pinged once it has been
   * silent for `interval - checkEvery / 2`): a ping's answer, a few ms after
   * one look, must not put the next ping off by a whole `checkEvery`.
   *
   * @default interval
   */
  checkEvery?: number
  /**
   * The interval of one connection, when it is not `interval`; undefined for
   * `interval`. A parley node pings the relays it holds a reservation on less
   * often than its other connections (node/network/libp2p.ts). Called for
   * every connection at every look: it must be cheap.
   */
  intervalFor?: (connection: Connection) => number | undefined
  /**
   * How long a ping may take before its connection is aborted, in ms: the
   * interval, but never under MIN_HEARTBEAT_TIMEOUT.
   *
   * @default max(interval, MIN_HEARTBEAT_TIMEOUT)
   */
  timeout?: number
  /** The muxers note times with Date.now() (`hearing`): the system clock but in unit tests. @default systemClock */
  clock?: Clock
  /** Pings one connection, resolving once it answered; injected by tests. @default pingConnection */
  probe?: (connection: Connection, signal: AbortSignal) => Promise<void>
}

export interface HeartbeatComponents {
  connectionManager: Pick<ConnectionManager, 'getConnections'>
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface Heartbeat {
  /** Pings sent so far. */
  readonly pinged: number
  /** Pings answered so far. */
  readonly answered: number
  /** Connections aborted so far because they did not answer in time. */
  readonly aborted: number
}

/** What a yamux muxer offers (js-libp2p's Connection keeps its muxer in a private field). */
interface PingingMuxer {
  ping(options?: AbortOptions): Promise<number>
}

/** What a muxer made by `hearing` offers besides. */
interface HearingMuxer {
  /** When its connection last read anything, ms since the epoch (Date.now()). */
  lastReceived: number
}

/** The connection's stream muxer, as far as the heartbeat uses it (js-libp2p's Connection keeps it in a private field). */
function muxerOf (connection: Connection): Partial<PingingMuxer & HearingMuxer> | undefined {
  return (connection as unknown as { muxer?: Partial<PingingMuxer & HearingMuxer> }).muxer
}

/** The connection's stream muxer, if it can ping by itself (yamux can). */
export function muxerPing (connection: Connection): PingingMuxer | undefined {
  const muxer = muxerOf(connection)
  return typeof muxer?.ping === 'function' ? muxer as PingingMuxer : undefined
}

/** When `connection` last received anything, if its muxer was made by `hearing`. */
export function lastReceived (connection: Connection): number | undefined {
  return muxerOf(connection)?.lastReceived
}

/**
 * A stream muxer whose muxers note when their connection last read anything
 * (`lastReceived`), which lets the heartbeat leave alone a connection that
 * still hears from its peer. The muxer reads its connection through the connection's
 * 'message' events (js-libp2p's AbstractStreamMuxer); one more listener on
 * them sets a number per chunk read, whatever the chunk holds: any frame,
 * a PING or its answer included.
 */
export function hearing<M extends StreamMuxer> (muxer: (components?: any) => StreamMuxerFactory<M>): (components?: any) => StreamMuxerFactory<M> {
  return (components) => {
    const factory = muxer(components)
    const create = factory.createStreamMuxer.bind(factory)
    factory.createStreamMuxer = (maConn: MessageStream): M => {
      const made = create(maConn) as M & HearingMuxer
      made.lastReceived = Date.now()
      maConn.addEventListener('message', () => { made.lastReceived = Date.now() })
      return made
    }
    return factory
  }
}

/** A ping over the ping protocol: a new stream, 32 random bytes that must come back. */
export async function pingProtocol (connection: Connection, signal: AbortSignal): Promise<void> {
  let stream
  try {
    stream = await connection.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true })
  } catch (err: any) {
    // it answered, only not this protocol: the connection is alive
    if (err.name === 'UnsupportedProtocolError') return
    throw err
  }
  try {
    const bytes = byteStream(stream)
    const sent = crypto.getRandomValues(new Uint8Array(PING_LENGTH))
    const [, got] = await Promise.all([bytes.write(sent, { signal }), bytes.read({ bytes: PING_LENGTH, signal })])
    if (got.subarray().some((b, i) => b !== sent[i])) throw new Error('the ping came back altered')
    await stream.close({ signal })
  } catch (err: any) {
    stream.abort(err)
    throw err
  }
}

/** Pings `connection` the cheapest way it allows: its muxer's ping, or the ping protocol. */
export async function pingConnection (connection: Connection, signal: AbortSignal): Promise<void> {
  const muxer = muxerPing(connection)
  if (muxer == null) {
    await pingProtocol(connection, signal)
    return
  }
  const rtt = await muxer.ping({ signal })
  // yamux answers a ping it shares with one in flight without a signal check
  signal.throwIfAborted()
  connection.rtt = rtt
}

export interface ProbeOnceInit {
  /** The connections with a probe in flight: a slow one is not probed twice. */
  inFlight: Set<string>
  probe: (connection: Connection, signal: AbortSignal) => Promise<void>
  clock: Clock
  /** How long the probe may take before the connection is aborted, in ms. */
  timeout: number
  /** Whether the service that asked still runs: a probe failing after it stopped aborts nothing. */
  running: () => boolean
  onAnswer?: () => void
  /** Told before the connection is aborted. */
  onDead: (err: Error) => void
}

/** Probes `connection` unless a probe is in flight on it already; one not answered in time aborts the connection. */
export function probeOnce (connection: Connection, init: ProbeOnceInit): void {
  if (init.inFlight.has(connection.id)) return
  init.inFlight.add(connection.id)
  const { signal, clear } = timeoutSignal(init.clock, init.timeout)
  init.probe(connection, signal)
    .then(() => init.onAnswer?.())
    .catch((err: Error) => {
      if (connection.status !== 'open' || !init.running()) return
      init.onDead(err)
      connection.abort(err)
    })
    .finally(() => {
      clear()
      init.inFlight.delete(connection.id)
    })
}

class DefaultHeartbeat implements Startable, Heartbeat {
  readonly [Symbol.toStringTag] = 'parley/heartbeat'
  pinged = 0
  answered = 0
  aborted = 0
  private readonly log: Logger
  private readonly interval: number
  private readonly checkEvery: number
  private readonly intervalFor: (connection: Connection) => number | undefined
  private readonly timeout: number
  private readonly clock: Clock
  private readonly probe: (connection: Connection, signal: AbortSignal) => Promise<void>
  /** Connections with a ping in flight: a slow one is not pinged twice. */
  private readonly pinging = new Set<string>()
  private timer?: ClockTimer
  /** First pings of connections that only a stream can ping, not yet due. */
  private readonly firstPings = new Set<ClockTimer>()
  private started = false

  constructor (private readonly components: HeartbeatComponents, init: HeartbeatInit = {}) {
    this.log = components.logger.forComponent('parley:heartbeat')
    this.interval = init.interval ?? 10_000
    this.checkEvery = init.checkEvery ?? this.interval
    this.intervalFor = init.intervalFor ?? (() => undefined)
    this.timeout = init.timeout ?? Math.max(this.interval, MIN_HEARTBEAT_TIMEOUT)
    this.clock = init.clock ?? systemClock
    this.probe = init.probe ?? pingConnection
    this.onConnectionOpen = this.onConnectionOpen.bind(this)
  }

  start (): void {
    this.started = true
    this.components.events.addEventListener('connection:open', this.onConnectionOpen)
    this.schedule()
  }

  stop (): void {
    this.started = false
    this.components.events.removeEventListener('connection:open', this.onConnectionOpen)
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
    for (const timer of this.firstPings) this.clock.clearTimeout(timer)
    this.firstPings.clear()
  }

  /**
   * A first ping as a connection opens, as yamux's own keep-alive did: its
   * round-trip time is what lets yamux grow a busy stream's receive window.
   * Where only a stream can ping (WebRTC), the first ping waits
   * FIRST_STREAM_PING_DELAY: a data channel opened in the connection's first
   * milliseconds, while the peer still closes the channel that set it up, can
   * fail although the connection works (in the NAT lab's logs, such a failed
   * identify channel was followed 0.6 s later by a channel that worked), and
   * a failed ping aborts its connection (3 full NAT lab runs in 4 had one
   * such abort, each a healthy WebRTC connection a few ms old).
   */
  private onConnectionOpen (evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    if (muxerPing(connection) != null) {
      this.beat(connection)
      return
    }
    const timer = this.clock.setTimeout(() => {
      this.firstPings.delete(timer)
      this.beat(connection)
    }, FIRST_STREAM_PING_DELAY)
    this.firstPings.add(timer)
  }

  private schedule (): void {
    if (!this.started) return
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      this.check()
      this.schedule()
    }, this.checkEvery)
  }

  /** Pings each connection that has been silent for its interval (to the nearest check). */
  private check (): void {
    const now = this.clock.now()
    for (const connection of this.components.connectionManager.getConnections()) {
      const heard = lastReceived(connection)
      const interval = this.intervalFor(connection) ?? this.interval
      if (heard != null && now - heard < interval - this.checkEvery / 2) continue
      this.beat(connection)
    }
  }

  private beat (connection: Connection): void {
    if (connection.status !== 'open' || this.pinging.has(connection.id)) return
    this.pinged++
    probeOnce(connection, {
      inFlight: this.pinging,
      probe: this.probe,
      clock: this.clock,
      timeout: this.timeout,
      running: () => this.started,
      onAnswer: () => { this.answered++ },
      onDead: (err) => {
        this.log('connection %s to %p did not answer a ping within %d ms, aborting it - %e', connection.id, connection.remotePeer, this.timeout, err)
        this.aborted++
      }
    })
  }
}

export function heartbeat (init: HeartbeatInit = {}): (components: HeartbeatComponents) => Heartbeat {
  return (components) => new DefaultHeartbeat(components, init)
}
