// 3. Cold first message: a node sends to a peer it knows only by peer ID. The
// peer listens on nothing but a relay circuit and WebRTC (as behind NAT), so
// the sender must look it up in the DHT (the relay is the DHT server), dial it
// through the relay and deliver; then the path is upgraded to a direct WebRTC
// connection. Three processes on loopback: relay, senders, recipients; new
// senders and recipients each round.
//  - steady state: the sender has been running for 2 s (its DHT is up);
//  - just started: the sender sends as soon as it has a DHT peer.
// Baseline: a bare libp2p node that already has the recipient's relay circuit
// address dials it and pings it (relay dial + one round trip, no lookup).
import { summarize } from '../lib/stats.mjs'

export const title = 'Cold first message: send to a peer known by peer ID only (DHT lookup, relay dial, delivery), then WebRTC'

// every peer here dials from 127.0.0.1: lift the per-IP and per-subnet limits
const RELAY_LIMITS = { inboundConnectionsPerSecond: 10_000, maxPendingConnections: 1024, maxReservationsPerIp: 100_000, maxReservationsPerSubnet: 100_000, maxCircuitsPerIp: 100_000, maxCircuitsPerSubnet: 100_000, maxConnectionsPerIp: 100_000, maxConnectionsPerSubnet: 100_000 }
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

export async function run ({ spawn, tempDir, scale, log }) {
  const rounds = Math.max(3, Math.round(7 * scale))
  const [relayWorker, sender, recipient] = await Promise.all([spawn('cold-relay'), spawn('cold-sender'), spawn('cold-recipient')])
  const relay = await relayWorker.call('relay:start', { listen: ['/ip4/127.0.0.1/tcp/0'], limits: RELAY_LIMITS })
  const relayAddr = relay.addrs[0]
  const steady = { send: [], direct: [], paths: [], upgrades: 0 }
  const fresh = { send: [], direct: [], paths: [], upgrades: 0 }
  const baseline = []

  const recipientUp = async (name) => {
    const peer = await recipient.call('parley:start', { name, dataDir: await tempDir(), listen: ['/webrtc'], relays: [relayAddr] })
    const addrs = await recipient.call('parley:reserved', { name })
    await recipient.call('parley:publish', { name })
    return { peerId: peer.peerId, circuit: addrs.find(x => x.includes('/p2p-circuit') && !x.includes('/webrtc')) }
  }
  const senderUp = async (name) => {
    await sender.call('parley:start', { name, dataDir: await tempDir(), listen: ['/ip4/127.0.0.1/tcp/0'], relays: [], bootstrap: [relayAddr] })
    await sender.call('parley:dhtReady', { name })
  }
  const coldSend = async (name, peer, into) => {
    const result = await sender.call('cold:send', { name, peer, size: 200, upgradeTimeout: 20_000 }, { timeout: 60_000 })
    into.send.push(result.sendMs)
    into.paths.push(result.path)
    if (result.directMs != null) {
      into.direct.push(result.directMs)
      into.upgrades++
    }
    return result
  }

  for (let r = 0; r < rounds; r++) {
    // steady state
    const [b1] = await Promise.all([recipientUp(`b${r}`), senderUp(`a${r}`)])
    await sleep(2_000)
    baseline.push(await sender.call('cold:baseline', { addr: b1.circuit, peer: b1.peerId }))
    const one = await coldSend(`a${r}`, b1.peerId, steady)
    // just started
    const b2 = await recipientUp(`c${r}`)
    await senderUp(`d${r}`)
    const two = await coldSend(`d${r}`, b2.peerId, fresh)
    log(`  round ${r + 1}/${rounds}: steady ${one.sendMs.toFixed(0)} ms (${one.path}; direct after ${one.directMs?.toFixed(0) ?? '-'} ms), just started ${two.sendMs.toFixed(0)} ms (${two.path}), baseline ${baseline.at(-1).toFixed(0)} ms`)
    await Promise.all([
      ...[`a${r}`, `d${r}`].map(async name => sender.call('parley:stop', { name })),
      ...[`b${r}`, `c${r}`].map(async name => recipient.call('parley:stop', { name }))
    ])
  }
  const s = summarize(steady.send)
  const base = summarize(baseline)
  return {
    raw: { rounds, steady, fresh, baseline },
    rows: [
      { metric: 'send → ack, first message to a peer known by ID only (sender up 2 s)', parley: s, baseline: { name: 'bare libp2p: dial the known relay circuit address + ping', ...base }, ratio: s.p50 / base.p50, target: '< 500 ms p50', met: s.p50 < 500 },
      { metric: `send → path direct: WebRTC upgrade done (${steady.upgrades}/${rounds} within 20 s)`, parley: summarize(steady.direct) },
      { metric: `the same, sender just started (it sends as soon as it has a DHT peer); ${fresh.paths.filter(p => p === 'direct').length}/${rounds} acked over WebRTC`, parley: summarize(fresh.send) }
    ]
  }
}
