/**
 * Heartbeats between parley nodes and relays, with real nodes and relays on
 * loopback: they ping through the muxer (no ping stream, which a relay would
 * pay for on each of its thousands of clients), and a node still finds a
 * relay that went silent dead, and reserves again once it answers.
 */
import { describe, expect, it } from 'vitest'
import { createNode } from '../../index.js'
import { reserved, useNetwork } from '../fixtures/network.js'
import { startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'
import { byteStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'

const PING = '/ipfs/ping/1.0.0'

function relayReserved (node: ParleyNode): boolean {
  return node.status().relays.some(r => r.reserved)
}

describe('heartbeats between nodes and relays', () => {
  const net = useNetwork()
  useProcesses()

  it('ping through the muxer: neither side opens a ping stream', async () => {
    const relay = await net.relay()
    const node = await net.node({ listen: [], relays: relay.multiaddrs, heartbeatInterval: 200 })
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

  it('a node finds a relay that went silent dead, and reserves again once it answers', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics'])
    const node = await createNode({ listen: [], relays: [relay.multiaddrs[0]], bootstrap: [], heartbeatInterval: 1_000 })
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
})
