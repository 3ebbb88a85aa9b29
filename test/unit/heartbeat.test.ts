import { defaultLogger } from '@libp2p/logger'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { TypedEventEmitter } from 'main-event'
import { describe, expect, it } from 'vitest'
import { FIRST_STREAM_PING_DELAY, hearing, heartbeat, lastReceived, pingConnection } from '../../common/heartbeat.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { HeartbeatInit } from '../../common/heartbeat.js'
import type { Connection, Libp2pEvents, Startable } from '@libp2p/interface'

interface FakeConnection extends Connection {
  aborted?: Error
  /** A muxer that can ping (yamux; a WebRTC connection has none), and, as one made by `hearing` has it, when the connection last received anything. */
  muxer?: { lastReceived?: number, ping?: () => Promise<number> }
}

let ids = 0

/**
 * A fake connection whose muxer can ping, as yamux can (the probe is the
 * test's own); `heardAt` makes its muxer note when it last received anything
 * (parley's muxers do); `webrtc` gives it no muxer that pings.
 */
function connection (heardAt?: number, { webrtc = false } = {}): FakeConnection {
  const conn: any = {
    id: `c${++ids}`,
    remotePeer: { toString: () => `peer${ids}` },
    status: 'open',
    abort (err: Error) { conn.aborted = err; conn.status = 'closed' },
    muxer: {
      ...(webrtc ? {} : { ping: async () => 1 }),
      ...(heardAt == null ? {} : { lastReceived: heardAt })
    }
  }
  return conn
}

/**
 * A heartbeat over fake connections, clock and probe; connections in `alive`
 * answer at once (the answer is something received), the others never.
 */
function setup (init: HeartbeatInit = {}) {
  const clock = new FakeClock()
  const events = new TypedEventEmitter<Libp2pEvents>()
  const connections: FakeConnection[] = []
  const alive = new Set<string>()
  const probed: string[] = []
  const service = heartbeat({
    clock,
    interval: 10_000,
    timeout: 10_000,
    probe: async (c: FakeConnection, signal) => {
      probed.push(c.id)
      if (alive.has(c.id)) {
        if (c.muxer != null) c.muxer.lastReceived = clock.now() + 3
        return
      }
      await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason) }) })
    },
    ...init
  })({
    connectionManager: { getConnections: () => connections },
    events,
    logger: defaultLogger()
  }) as ReturnType<ReturnType<typeof heartbeat>> & Startable
  service.start()
  const open = (c: FakeConnection, alsoAlive = true): void => {
    connections.push(c)
    if (alsoAlive) alive.add(c.id)
    events.safeDispatchEvent('connection:open', { detail: c })
  }
  const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }
  /** Moves the clock on by `ms`, `step` at a time, letting the probes settle after each step. */
  const run = async (ms: number, step = 1_000): Promise<void> => {
    for (let t = 0; t < ms; t += step) {
      clock.advance(Math.min(step, ms - t))
      await settle()
    }
  }
  const pings = (c: Connection): number => probed.filter(id => id === c.id).length
  return { clock, service, connections, alive, probed, open, settle, run, pings }
}

describe('heartbeat', () => {
  it('pings a connection as it opens and then once per interval', async () => {
    const t = setup()
    const c = connection()
    t.open(c)
    expect(t.probed).toEqual([c.id])
    await t.settle()
    t.clock.advance(9_999)
    await t.settle()
    expect(t.probed).toHaveLength(1)
    t.clock.advance(1)
    await t.settle()
    t.clock.advance(10_000)
    await t.settle()
    expect(t.probed).toEqual([c.id, c.id, c.id])
    expect(c.aborted).toBeUndefined()
    expect(t.service.aborted).toBe(0)
  })

  it('pings a connection that only a stream can ping (WebRTC) a moment after it opens, not as it opens', async () => {
    const t = setup()
    const c = connection(undefined, { webrtc: true })
    t.open(c)
    await t.settle()
    // a stream opened while the peer still sets the connection up may fail, and a failed ping aborts
    expect(t.probed).toEqual([])
    t.clock.advance(FIRST_STREAM_PING_DELAY - 1)
    await t.settle()
    expect(t.probed).toEqual([])
    t.clock.advance(1)
    await t.settle()
    expect(t.probed).toEqual([c.id])
    expect(c.aborted).toBeUndefined()
  })

  it('pings no connection after stop, a first ping not yet due included', async () => {
    const t = setup()
    const c = connection(undefined, { webrtc: true })
    t.open(c)
    t.service.stop()
    t.clock.advance(60_000)
    await t.settle()
    expect(t.probed).toEqual([])
    expect(t.clock.pending).toBe(0)
  })

  it('aborts a connection that went silent within interval + timeout, and only that one', async () => {
    const t = setup()
    const live = connection()
    const dead = connection()
    t.open(live)
    t.open(dead)
    await t.settle()
    // the relay's host goes away without a word: its pings are no longer answered
    t.alive.delete(dead.id)
    t.clock.advance(10_000)
    await t.settle()
    expect(dead.aborted).toBeUndefined()
    t.clock.advance(10_000)
    await t.settle()
    expect(dead.aborted?.name).toBe('TimeoutError')
    expect(dead.status).toBe('closed')
    expect(live.aborted).toBeUndefined()
    expect(t.service.aborted).toBe(1)
  })

  it('never has two pings in flight on one connection', async () => {
    const t = setup()
    const slow = connection()
    t.open(slow, false)
    await t.settle()
    // its first ping is still waiting when the next beat comes
    t.clock.advance(10_000)
    await t.settle()
    expect(t.probed.filter(id => id === slow.id)).toHaveLength(1)
  })

  it('does not ping a connection that received something within the interval, and pings one that did not', async () => {
    const t = setup()
    const busy = connection(t.clock.now())
    const quiet = connection(t.clock.now())
    t.connections.push(busy, quiet)
    t.alive.add(busy.id)
    t.alive.add(quiet.id)
    for (let beat = 1; beat <= 6; beat++) {
      // the busy one receives a frame of some stream every 3 s
      for (let i = 0; i < 3; i++) {
        busy.muxer!.lastReceived = t.clock.now()
        await t.run(3_000)
      }
      await t.run(1_000)
    }
    // 60 s: the busy one was never pinged, the quiet one once per interval
    expect(t.pings(busy)).toBe(0)
    expect(t.pings(quiet)).toBe(6)
    expect(t.service.pinged).toBe(6)
    expect(t.service.answered).toBe(6)
  })

  it('counts the answer to its own ping as heard, without putting the next ping off by a check', async () => {
    const t = setup()
    const c = connection(t.clock.now())
    t.open(c)
    await t.settle()
    await t.run(60_000)
    // the answer comes a few ms after each ping: still one ping per interval
    expect(t.pings(c)).toBe(7)
  })

  it('pings the connections intervalFor names at their own interval', async () => {
    const t = setup({ intervalFor: (c) => c.remotePeer.toString() === 'relay' ? 60_000 : undefined })
    const relay = Object.assign(connection(t.clock.now()), { remotePeer: { toString: () => 'relay' } })
    const peer = connection(t.clock.now())
    t.connections.push(relay, peer)
    t.alive.add(relay.id)
    t.alive.add(peer.id)
    await t.run(59_000)
    expect(t.pings(relay)).toBe(0)
    expect(t.pings(peer)).toBe(5)
    await t.run(61_000)
    expect(t.pings(relay)).toBe(2)
    expect(t.pings(peer)).toBe(12)
  })

  it('aborts a connection that went silent and does not answer, within interval + checkEvery / 2 + timeout of the last thing it received', async () => {
    const t = setup({ interval: 90_000, checkEvery: 30_000, timeout: 30_000 })
    const live = connection(t.clock.now())
    const frozen = connection(t.clock.now())
    t.connections.push(live, frozen)
    t.alive.add(live.id)
    // the worst case: the frozen client's last frame came so that its silence
    // is just short of interval - checkEvery / 2 at a check (at 120 s)
    await t.run(30_000)
    const last = t.clock.now() + 15_001
    frozen.muxer!.lastReceived = last
    await t.run(last - t.clock.now() + 134_000)
    expect(t.pings(frozen)).toBe(1)
    expect(frozen.aborted).toBeUndefined()
    await t.run(1_000)
    expect(frozen.aborted?.name).toBe('TimeoutError')
    expect(live.aborted).toBeUndefined()
    expect(t.service.aborted).toBe(1)
  })

  it('two ends with passive liveness: the end with the shorter interval pings, the other never does', async () => {
    // a node and its relay, on one clock; a PING either sends is received by the other end, the answer by the sender
    const clock = new FakeClock()
    const nodeSide = connection(clock.now())
    const relaySide = connection(clock.now())
    const link = new Map([[nodeSide.id, relaySide], [relaySide.id, nodeSide]])
    const probed: string[] = []
    const start = (conn: FakeConnection, init: HeartbeatInit): ReturnType<ReturnType<typeof heartbeat>> & Startable => {
      const service = heartbeat({
        clock,
        ...init,
        probe: async (c: FakeConnection) => {
          probed.push(c.id)
          link.get(c.id)!.muxer!.lastReceived = clock.now()
          c.muxer!.lastReceived = clock.now() + 3
        }
      })({
        connectionManager: { getConnections: () => [conn] },
        events: new TypedEventEmitter<Libp2pEvents>(),
        logger: defaultLogger()
      }) as ReturnType<ReturnType<typeof heartbeat>> & Startable
      service.start()
      return service
    }
    // as node/network/libp2p.ts and relay/relay.ts set them up, the relay's check out of step with the node's
    const node = start(nodeSide, { interval: 10_000, intervalFor: () => 60_000 })
    clock.advance(4_321)
    const relay = start(relaySide, { interval: 90_000, checkEvery: 30_000, timeout: 30_000 })
    for (let t = 0; t < 30 * 60_000; t += 1_000) {
      clock.advance(1_000)
      for (let i = 0; i < 5; i++) await Promise.resolve()
    }
    expect(relay.pinged).toBe(0)
    // one PING a minute on the link, from the node
    expect(node.pinged).toBeGreaterThanOrEqual(29)
    expect(node.pinged).toBeLessThanOrEqual(30)
    expect(probed.every(id => id === nodeSide.id)).toBe(true)
  })

  it('stops pinging once stopped', async () => {
    const t = setup()
    t.open(connection())
    await t.settle()
    t.service.stop()
    t.clock.advance(60_000)
    await t.settle()
    expect(t.probed).toHaveLength(1)
    expect(t.clock.pending).toBe(0)
  })
})

describe('hearing', () => {
  it('makes muxers that note when their connection last received anything: a PING, its answer, a stream\'s data', async () => {
    const muxers = hearing(yamux({ enableKeepAlive: false }))()
    const [outbound, inbound] = multiaddrConnectionPair()
    const client = muxers.createStreamMuxer(outbound)
    const server = muxers.createStreamMuxer(inbound)
    const heardBy = (muxer: unknown): number | undefined => lastReceived({ muxer } as unknown as Connection)
    expect(heardBy(client)).toBeTypeOf('number')
    try {
      Object.assign(client, { lastReceived: 0 })
      Object.assign(server, { lastReceived: 0 })
      await client.ping()
      // the server received the PING, the client its answer
      expect(heardBy(server)).toBeGreaterThan(0)
      expect(heardBy(client)).toBeGreaterThan(0)

      Object.assign(server, { lastReceived: 0 })
      const opened = new Promise(resolve => { server.addEventListener('stream', resolve, { once: true }) })
      const stream = await client.createStream()
      stream.send(new Uint8Array([1, 2, 3]))
      await opened
      expect(heardBy(server)).toBeGreaterThan(0)
    } finally {
      client.abort(new Error('done'))
      server.abort(new Error('done'))
    }
  })
})

describe('pingConnection', () => {
  it('asks the muxer when it can ping, and opens no stream', async () => {
    let streams = 0
    const conn: any = {
      muxer: { ping: async () => 7 },
      newStream: async () => { streams++; throw new Error('no stream expected') }
    }
    await pingConnection(conn, new AbortController().signal)
    expect(streams).toBe(0)
    expect(conn.rtt).toBe(7)
  })

  it('fails when the muxer answers after the timeout', async () => {
    const controller = new AbortController()
    const conn: any = {
      muxer: { ping: async () => { controller.abort(new Error('timed out')); return 7 } }
    }
    await expect(pingConnection(conn, controller.signal)).rejects.toThrow('timed out')
  })

  it('falls back to the ping protocol without a pinging muxer (WebRTC), and counts a peer without it as alive', async () => {
    const protocols: string[] = []
    const conn: any = {
      newStream: async (protocol: string) => {
        protocols.push(protocol)
        throw Object.assign(new Error('unsupported'), { name: 'UnsupportedProtocolError' })
      }
    }
    await pingConnection(conn, new AbortController().signal)
    expect(protocols).toEqual(['/ipfs/ping/1.0.0'])
  })
})
