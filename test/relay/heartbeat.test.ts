/**
 * Heartbeats between parley nodes and relays, with real nodes and relays on
 * loopback: they ping through the muxer (no ping stream, which a relay would
 * pay for on each of its thousands of clients), a relay pings none of the
 * clients that ping it, a node still finds a relay that went silent dead and
 * reserves again once it answers, and a relay drops a client that went
 * silent.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, expect, it } from 'vitest'
import { createNode } from '../../index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { reserved, useNetwork } from '../fixtures/network.js'
import { NODE, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'
import { byteStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'

const PING = '/ipfs/ping/1.0.0'
const RELAY_CLIENT = join(import.meta.dirname, '..', 'fixtures', 'relay-client-process.mjs')

function relayReserved (node: ParleyNode): boolean {
  return node.status().relays.some(r => r.reserved)
}

describe('heartbeats between nodes and relays', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()
  useProcesses()

  it('ping through the muxer: neither side opens a ping stream', async () => {
    const relay = await net.relay()
    const node = await net.node({ listen: [], relays: relay.multiaddrs, heartbeatInterval: 200, relayHeartbeatInterval: 200 })
    // libp2p's connection monitor (a ping stream per connection every 10 s) is off on both
    for (const libp2p of [relay.libp2p, node.libp2p]) {
      expect(Object.keys((libp2p as unknown as { components: { components: object } }).components.components)).not.toContain('connectionMonitor')
    }
    // from here on, count the ping streams each side answers (kad-dht pings a
    // new DHT contact once over the ping protocol: a few at the start are its)
    let pingStreams = 0
    const counting = async (stream: Stream): Promise<void> => {
      pingStreams++
      const bytes = byteStream(stream)
      try {
        await bytes.write(await bytes.read({ bytes: 32 }))
        await stream.close()
      } catch (err: any) {
        stream.abort(err)
      }
    }
    for (const libp2p of [relay.libp2p, node.libp2p]) {
      await libp2p.unhandle(PING)
      await libp2p.handle(PING, counting, { runOnLimitedConnection: true })
    }
    await reserved(node)

    const heartbeat = node.libp2p.services.heartbeat
    const beats = async (n: number): Promise<void> => {
      const from = heartbeat.answered
      await until(() => heartbeat.answered >= from + n, { every: 100, what: `${n} more heartbeats answered` })
    }
    await beats(5)
    const settled = pingStreams
    await beats(10)
    // ten beats later: not one more ping stream
    expect(pingStreams).toBe(settled)
    expect(settled).toBeLessThanOrEqual(2)
    // the relay pinged its new client once as it connected, through the muxer too
    expect(relay.libp2p.services.heartbeat.answered).toBeGreaterThanOrEqual(1)
    expect(heartbeat.aborted).toBe(0)
    const toRelay = node.libp2p.getConnections(relay.peerId)
    expect(toRelay.length).toBeGreaterThan(0)
    expect(toRelay[0].rtt).toBeTypeOf('number')
  })

  it('a relay pings none of the clients that ping it', async () => {
    // a relay pings a connection silent for 5 s of its 6 s interval; the node pings its relay every 0.5 s
    const relay = await net.relay({ heartbeatInterval: 6_000 })
    const node = await net.node({ listen: [], relays: relay.multiaddrs, heartbeatInterval: 200, relayHeartbeatInterval: 500 })
    await reserved(node)
    const relayPings = relay.libp2p.services.heartbeat
    const nodePings = node.libp2p.services.heartbeat
    // the relay's pings of its new client's connections as they opened are over
    await until(() => relayPings.answered + relayPings.aborted >= relayPings.pinged, { every: 100, what: 'the relay\'s first pings answered' })
    const relayBefore = relayPings.pinged
    const nodeBefore = nodePings.answered
    // 20 pings of the node's (10 s): the relay, looking every 2 s, would have pinged 5 times without them
    await until(() => nodePings.answered >= nodeBefore + 20, { every: 100, what: '20 more heartbeats of the node answered', timeout: 90_000 })
    expect(relayPings.pinged).toBe(relayBefore)
    expect(relayPings.aborted).toBe(0)
    expect(nodePings.aborted).toBe(0)
  })

  it('a node finds a relay that went silent dead, and reserves again once it answers', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics'])
    // found dead within relayHeartbeatInterval + 1.5 × heartbeatInterval + the 5 s a ping gets at least: 9.5 s here
    const node = await createNode({ listen: [], relays: [relay.multiaddrs[0]], bootstrap: [], heartbeatInterval: 1_000, relayHeartbeatInterval: 3_000 })
    try {
      await reserved(node)
      // the relay's host stops answering without closing anything: no FIN, no RST,
      // only the heartbeat can tell (TCP itself would take many minutes)
      process.kill(relay.pid, 'SIGSTOP')
      await until(() => !relayReserved(node), {
        on: [node.libp2p.services.reservations, 'change'],
        what: 'the node to drop its reservation on the silent relay',
        timeout: 30_000
      })
      expect(node.libp2p.services.heartbeat.aborted).toBeGreaterThanOrEqual(1)
      // its connection was aborted (a new one cannot finish its handshake with a stopped process)
      expect(node.libp2p.getConnections().some(c => c.remotePeer.toString() === relay.peerId)).toBe(false)

      process.kill(relay.pid, 'SIGCONT')
      await until(() => relayReserved(node), {
        on: [node.libp2p.services.reservations, 'change'],
        what: 'the node to reserve on the relay again',
        timeout: 60_000
      })
    } finally {
      process.kill(relay.pid, 'SIGCONT')
      await node.stop()
    }
  })

  it('a relay drops a client that went silent, and frees its slot', async () => {
    // a silent client is dropped within 1.5 × the relay's heartbeatInterval (5 s a ping gets at least): 8.5 s here
    const relay = await net.relay({ heartbeatInterval: 3_000 })
    // a data dir of this test's: the client is killed, and leaves nothing elsewhere
    const client = spawn(NODE, [RELAY_CLIENT, relay.multiaddrs[0].toString(), await tempDir()], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: client.stdout }).once('line', resolve)
        client.once('exit', (code, signal) => { reject(new Error(`the client exited (${code ?? signal}) before it reserved`)) })
      })
      const { peerId } = JSON.parse(line) as { peerId: string }
      await until(() => relay.reservations === 1, { every: 100, what: 'the relay to hold the client\'s reservation' })
      const connected = (): boolean => relay.libp2p.getConnections().some(c => c.remotePeer.toString() === peerId)
      expect(connected()).toBe(true)
      // the client's host stops without closing anything: no FIN, no RST
      process.kill(client.pid!, 'SIGSTOP')
      // the slot is freed by a 'peer:disconnect' listener of the relay's own,
      // which may run after this wait's: poll too
      await until(() => !connected() && relay.reservations === 0, {
        on: [relay.libp2p, 'peer:disconnect'],
        every: 200,
        what: 'the relay to drop the silent client and free its slot',
        timeout: 60_000
      })
      expect(relay.libp2p.services.heartbeat.aborted).toBeGreaterThanOrEqual(1)
    } finally {
      client.kill('SIGKILL')
    }
  })
})
