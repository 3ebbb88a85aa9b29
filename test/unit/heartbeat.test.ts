import { defaultLogger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import { describe, expect, it } from 'vitest'
import { heartbeat, pingConnection } from '../../common/heartbeat.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { Connection, Libp2pEvents, Startable } from '@libp2p/interface'

interface FakeConnection extends Connection { aborted?: Error }

let ids = 0

function connection (): FakeConnection {
  const conn: any = {
    id: `c${++ids}`,
    remotePeer: { toString: () => `peer${ids}` },
    status: 'open',
    abort (err: Error) { conn.aborted = err; conn.status = 'closed' }
  }
  return conn
}

/** A heartbeat over fake connections, clock and probe; connections in `alive` answer at once, the others never. */
function setup () {
  const clock = new FakeClock()
  const events = new TypedEventEmitter<Libp2pEvents>()
  const connections: FakeConnection[] = []
  const alive = new Set<string>()
  const probed: string[] = []
  const service = heartbeat({
    clock,
    interval: 10_000,
    timeout: 10_000,
    probe: async (c, signal) => {
      probed.push(c.id)
      if (alive.has(c.id)) return
      await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason) }) })
    }
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
  return { clock, service, connections, alive, probed, open, settle }
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
