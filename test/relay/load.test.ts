import { afterEach, describe, expect, it } from 'vitest'
import { createNode } from '../../index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { reserved } from '../fixtures/network.js'
import { httpGet, metricValue, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import type { ParleyNode, ReceivedMessage } from '../../index.js'

/** The protocol over which a node accepts WebRTC connections signalled through a relay. */
const WEBRTC_SIGNALING = '/webrtc-signaling/0.0.1'
const NODES = 200
const PAIRS = 50
/** Messages each side of a pair sends. */
const ROUNDS = 10

/** The refusal series (requests and connections) that are not 0, to name them when a test expects none. */
function refusals (metrics: string): string[] {
  return metrics.split('\n').filter(line => /^parley_relay_(refusals|connections_refused)_total\{/.test(line) && !/ 0$/.test(line))
}

describe('one relay process under load', () => {
  const tempDir = useTempDirs()
  useProcesses()
  let nodes: ParleyNode[] = []
  afterEach(async () => {
    const stopping = nodes
    nodes = []
    await Promise.allSettled(stopping.map(async n => { await n.stop() }))
  })

  it(`holds ${NODES} reservations while ${PAIRS} pairs exchange messages through it`, async () => {
    // as deployed: identity and peer store on disk. Every node dials from
    // 127.0.0.1: lift the per-IP and per-subnet limits, and make room for
    // NODES reservations with some to spare for re-reservations (the shipped
    // 128 is fewer); keep the rest as shipped.
    const dataDir = await tempDir()
    const relay = await startRelayProcess([
      '--data-dir', dataDir,
      '--listen', '/ip4/127.0.0.1/tcp/0',
      '--metrics', '127.0.0.1:0',
      '--max-reservations', String(2 * NODES),
      '--max-reservations-per-ip', '1000',
      '--max-reservations-per-subnet', '1000',
      '--max-connections-per-ip', '1000',
      '--max-connections-per-subnet', '1000',
      '--max-circuits-per-ip', '1000',
      '--max-circuits-per-subnet', '1000',
      '--inbound-connections-per-second', '10000',
      '--max-pending-connections', '1024'
    ])
    const scrape = async (): Promise<string> => (await httpGet(`${relay.metricsUrl ?? ''}/metrics`)).body

    // nodes with no listener of their own: a relay circuit is their only way in,
    // so every message really crosses the relay process
    for (let i = 0; i < NODES; i += 20) {
      nodes.push(...await Promise.all(Array.from({ length: Math.min(20, NODES - i) }, async () => createNode({
        listen: [],
        relays: [relay.multiaddrs[0]],
        // a dial slowed by this load past 5 s would send a message to the
        // recipient's mailbox (and `send` would resolve `stored`): this test is
        // about the relay's circuits, so messages wait for them
        mailboxAfter: 120_000
      }))))
    }
    // 200 nodes reserving at once on shared cores: longer than the fixture's usual wait, within the test's 300 s
    await Promise.all(nodes.map(async n => { await reserved(n, 1, 240_000) }))
    // The WebRTC transport accepts WebRTC signalled over a relay even without a
    // /webrtc listen address, and the node would move each pair onto it; take
    // that away so that every message crosses the relay, which is under test.
    await Promise.all(nodes.map(async n => { await n.libp2p.unhandle(WEBRTC_SIGNALING) }))
    let text = await scrape()
    expect(metricValue(text, 'parley_relay_reservations')).toBe(NODES)
    expect(refusals(text)).toEqual([])

    const inboxes = new Map<string, ReceivedMessage[]>()
    for (const node of nodes) {
      const inbox: ReceivedMessage[] = []
      inboxes.set(node.peerId.toString(), inbox)
      node.addEventListener('message', evt => { inbox.push(evt.detail) })
    }
    // pairs among the first 100 nodes; the other 100 just hold their reservations.
    // Each side knows the other's relayed address, as from an invite.
    const pairs = Array.from({ length: PAIRS }, (_, i) => [nodes[2 * i], nodes[2 * i + 1]] as const)
    await Promise.all(pairs.flatMap(([a, b]) => [
      a.libp2p.peerStore.merge(b.peerId, { multiaddrs: b.multiaddrs }),
      b.libp2p.peerStore.merge(a.peerId, { multiaddrs: a.multiaddrs })
    ]))

    let sent = 0
    for (let round = 0; round < ROUNDS; round++) {
      const receipts = await Promise.all(pairs.flatMap(([a, b], i) => [
        a.send(b.peerId, `pair ${i} round ${round} a->b`, { timeout: 60_000 }),
        b.send(a.peerId, `pair ${i} round ${round} b->a`, { timeout: 60_000 })
      ]))
      sent += receipts.length
      expect(receipts.map(r => `${r.status} ${r.path}`).filter(r => r !== 'delivered relayed')).toEqual([])
    }

    pairs.forEach(([a, b], i) => {
      const atB = inboxes.get(b.peerId.toString())?.filter(m => m.from === a.peerId.toString()).map(m => m.body)
      const atA = inboxes.get(a.peerId.toString())?.filter(m => m.from === b.peerId.toString()).map(m => m.body)
      expect(atB).toEqual(Array.from({ length: ROUNDS }, (_, r) => `pair ${i} round ${r} a->b`))
      expect(atA).toEqual(Array.from({ length: ROUNDS }, (_, r) => `pair ${i} round ${r} b->a`))
    })

    text = await scrape()
    expect(metricValue(text, 'parley_relay_reservations')).toBe(NODES)
    expect(refusals(text)).toEqual([])
    // one circuit per pair, two if both sides dialled at once
    const circuits = metricValue(text, 'parley_relay_circuits_opened_total')
    expect(circuits).toBeGreaterThanOrEqual(PAIRS)
    expect(circuits).toBeLessThanOrEqual(2 * PAIRS)
    const relayedBytes = metricValue(text, 'parley_relay_relayed_bytes_total')
    expect(relayedBytes).toBeGreaterThan(sent * 100)

    await Promise.all(nodes.map(async n => { await n.stop() }))
    nodes = []
    expect(await relay.stop()).toEqual({ code: 0, signal: null })
  }, 300_000)
})
