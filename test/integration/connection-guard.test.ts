import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { MemoryDatastore } from 'datastore-core'
import { createLibp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { PROTOCOL } from '../../protocols/im/index.js'
import { DEFAULT_DHT_PROTOCOL } from '../../common/constants.js'
import { resolveNodeConfig } from '../../node/config.js'
import { createNodeLibp2p } from '../../node/network/libp2p.js'
import { LOOPBACK_TCP, reserved, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import { TRUSTED_TAG } from '../../node/network/connection-guard.js'
import type { ConnectionLimits } from '../../node/network/connection-guard.js'
import type { NodeLibp2p } from '../../node/network/libp2p.js'
import type { InboundMessage } from '../../protocols/im/index.js'
import { KEEP_ALIVE } from '@libp2p/interface'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'

/**
 * The user's libp2p node as createNode assembles it, with connection limits
 * and one trusted peer, and what its /im service received.
 */
function useVictims (): (limits: ConnectionLimits, trusted: () => PeerId | undefined) => Promise<{ libp2p: NodeLibp2p, received: InboundMessage[] }> {
  let running: Libp2p[] = []
  afterEach(async () => {
    const stopping = running
    running = []
    await Promise.allSettled(stopping.map(async n => { await n.stop() }))
  })
  return async (limits, trusted) => {
    const received: InboundMessage[] = []
    const config = resolveNodeConfig({ listen: [LOOPBACK_TCP], relays: [], iceBindAddress: '127.0.0.1', connectionLimits: limits })
    const libp2p = await createNodeLibp2p(config, await generateKeyPair('Ed25519'), new MemoryDatastore(), defaultLogger(), {
      store: async (message) => { received.push(message); return 'stored' as const },
      trust: { isTrusted: (peer) => trusted()?.equals(peer) === true }
    })
    await libp2p.start()
    running.push(libp2p)
    return { libp2p, received }
  }
}

/** Bare libp2p nodes (TCP, Noise, yamux, nothing else) that open connections and hold them. */
function useAttackers (): (count: number) => Promise<Libp2p[]> {
  let running: Libp2p[] = []
  afterEach(async () => {
    const stopping = running
    running = []
    await Promise.allSettled(stopping.map(async n => { await n.stop() }))
  })
  return async (count) => {
    const nodes = await Promise.all(Array.from({ length: count }, async () => createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()]
    })))
    running.push(...nodes)
    return nodes
  }
}

/** Each attacker dials `victim` (ten at a time, under libp2p's pending-connection limit); the connections that opened. */
async function flood (attackers: Libp2p[], victim: NodeLibp2p): Promise<Connection[]> {
  const opened: Connection[] = []
  for (let i = 0; i < attackers.length; i += 10) {
    const results = await Promise.allSettled(attackers.slice(i, i + 10).map(async a => a.dial(victim.getMultiaddrs())))
    for (const r of results) if (r.status === 'fulfilled') opened.push(r.value)
  }
  return opened
}

/** Resolves once the victim has decided on `count` inbound connections: let in (still open) or refused. */
async function decided (victim: NodeLibp2p, count: number): Promise<void> {
  const guard = victim.services.connectionGuard
  const seen = (): number => victim.getConnections().filter(c => c.direction === 'inbound').length + Object.values(guard.refused).reduce((a, b) => a + b, 0)
  await until(() => seen() >= count, {
    on: [[victim, 'connection:open'], [guard, 'connection:refused']],
    what: () => `the victim to decide on ${count} inbound connections (${seen()} so far)`
  })
}

/** Resolves once every one of `peers` has no connection left to `node`, failing after `timeout` ms. */
async function allClosed (node: NodeLibp2p, peers: PeerId[], timeout: number): Promise<void> {
  const open = (): number => peers.reduce((n, p) => n + node.getConnections(p).length, 0)
  await until(() => open() === 0, { on: [node, 'connection:close'], timeout, what: () => `the connections to close (${open()} still open)` })
}

describe('strangers opening many connections from one IP address', () => {
  const net = useNetwork()
  const victim = useVictims()
  const attackers = useAttackers()

  it('are held to the per-IP limit, and a contact from the same address still gets through', async () => {
    const trusted: { peer?: PeerId } = {}
    const { libp2p: target, received } = await victim({ maxInboundPerIp: 8 }, () => trusted.peer)

    const flooding = await attackers(60)
    await flood(flooding, target)
    await decided(target, 60)
    const strangers = (): Connection[] => target.getConnections().filter(c => c.direction === 'inbound' && flooding.some(a => a.peerId.equals(c.remotePeer)))
    expect(strangers()).toHaveLength(8)
    expect(target.services.connectionGuard.refused['per-ip']).toBe(52)

    // a contact, also on 127.0.0.1, connects and delivers while the strangers hold theirs
    const honest = await net.node({ relays: [] })
    trusted.peer = honest.peerId
    await honest.libp2p.peerStore.merge(target.peerId, { multiaddrs: target.getMultiaddrs() })
    await expect(honest.send(target.peerId, 'hello through the flood', { timeout: 30_000 })).resolves.toMatchObject({ status: 'delivered', path: 'direct' })
    expect(received.map(m => [m.from.toString(), m.body])).toEqual([[honest.peerId.toString(), 'hello through the flood']])
    expect(strangers().filter(c => c.status === 'open')).toHaveLength(8)
  })

  it('are closed once idle, while a contact\'s idle connection and a stranger\'s busy one stay', async () => {
    const trusted: { peer?: PeerId } = {}
    const { libp2p: target } = await victim({ idleTimeout: 500 }, () => trusted.peer)

    const honest = await net.node({ relays: [] })
    trusted.peer = honest.peerId
    await honest.libp2p.peerStore.merge(target.peerId, { multiaddrs: target.getMultiaddrs() })
    await honest.send(target.peerId, 'hello', { timeout: 30_000 })

    const [busy, ...idle] = await attackers(4)
    await flood([busy, ...idle], target)
    await decided(target, 5)
    expect(target.getConnections().filter(c => c.direction === 'inbound')).toHaveLength(5)
    // one stranger keeps an /im stream open: it is using the connection
    await busy.getConnections(target.peerId)[0].newStream(PROTOCOL)

    await allClosed(target, idle.map(a => a.peerId), 15_000)
    expect(target.getConnections(busy.peerId).map(c => c.status)).toEqual(['open'])
    expect(target.getConnections(honest.peerId).some(c => c.status === 'open')).toBe(true)
    // and the contact is tagged so that libp2p's pruner closes its connections last
    expect((await target.peerStore.get(honest.peerId)).tags.get(TRUSTED_TAG)?.value).toBe(100)
  })
})

describe('connections the user\'s node opened to DHT servers', () => {
  const victim = useVictims()
  let running: Libp2p[] = []
  afterEach(async () => {
    const stopping = running
    running = []
    await Promise.allSettled(stopping.map(async n => { await n.stop() }))
  })
  /** A bare libp2p node listening on loopback, serving (in name: identify says so) the DHT protocol or not. */
  async function peerNode (servesDht: boolean): Promise<Libp2p> {
    const node = await createLibp2p({
      addresses: { listen: [LOOPBACK_TCP] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() }
    })
    if (servesDht) await node.handle(DEFAULT_DHT_PROTOCOL, (stream) => { stream.abort(new Error('not here')) })
    running.push(node)
    return node
  }

  it('are closed once idle for dhtIdleTimeout, unless the server is trusted; other connections it opened stay', async () => {
    const [server, trustedServer, other] = await Promise.all([peerNode(true), peerNode(true), peerNode(false)])
    const { libp2p } = await victim({ dhtIdleTimeout: 500 }, () => trustedServer.peerId)
    for (const peer of [server, trustedServer, other]) await libp2p.dial(peer.getMultiaddrs())
    // what identify told of each: the DHT servers serve the DHT protocol
    await until(async () => (await libp2p.peerStore.get(server.peerId)).protocols.includes(DEFAULT_DHT_PROTOCOL), { on: [libp2p, 'peer:identify'], what: 'identify of the DHT server' })

    await allClosed(libp2p, [server.peerId], 15_000)
    expect(libp2p.getConnections(trustedServer.peerId).map(c => c.status)).toEqual(['open'])
    expect(libp2p.getConnections(other.peerId).map(c => c.status)).toEqual(['open'])
  })
})

describe('a node in DHT client mode', () => {
  const net = useNetwork()

  it('does not have libp2p keep its closest DHT servers connected (kad-dht\'s KEEP_ALIVE tag), while their kad-close tag stays', async () => {
    const relay = await net.relay()
    const node = await net.node({ relays: [], bootstrap: [relay.multiaddrs[0].toString()] })
    // kad-dht tags its closest peers every few seconds: both tags in one merge
    const tags = async (): Promise<string[]> => [...(await node.libp2p.peerStore.get(relay.peerId).catch(() => undefined))?.tags.keys() ?? []]
    await until(async () => (await tags()).includes('kad-close'), { on: [node.libp2p, 'peer:update'], what: 'the relay tagged kad-close by the DHT', timeout: 30_000 })
    expect((await tags()).filter(tag => tag.startsWith(KEEP_ALIVE))).toEqual([])
  })
})

describe('the peer store of the user\'s node', () => {
  const victim = useVictims()

  it('keeps no address that leads to another peer', async () => {
    const { libp2p } = await victim({}, () => undefined)
    const bob = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const mallory = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { multiaddr } = await import('@multiformats/multiaddr')
    await libp2p.peerStore.merge(bob, { multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/9/p2p/${mallory}`), multiaddr('/ip4/127.0.0.1/tcp/10')] })
    expect((await libp2p.peerStore.get(bob)).addresses.map(a => a.multiaddr.toString())).toEqual(['/ip4/127.0.0.1/tcp/10'])
  })

  it('does not keep every stranger forever: past maxStoredPeers, untrusted peers are forgotten, trusted ones kept', async () => {
    const friend = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { libp2p } = await victim({ maxStoredPeers: 10 }, () => friend)
    const { multiaddr } = await import('@multiformats/multiaddr')
    await libp2p.peerStore.merge(friend, { multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/11')] })
    for (let i = 0; i < 40; i++) {
      await libp2p.peerStore.merge(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), { multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/${1000 + i}`)] })
    }
    expect(await libp2p.peerStore.all()).toHaveLength(41)
    expect(await libp2p.services.connectionGuard.prunePeerStore()).toBe(31)
    const left = await libp2p.peerStore.all()
    expect(left).toHaveLength(10)
    expect(left.some(p => p.id.equals(friend))).toBe(true)
  })
})

describe('relayed connections', () => {
  const net = useNetwork()

  it('are closed once idle for relayedIdleTimeout, a contact\'s too, so that the relay\'s circuit serves the next peer', async () => {
    // one circuit per peer at the relay: bob's second relayed peer needs the first one's circuit gone
    const relay = await net.relay({ limits: { maxCircuitsPerPeer: 1 } })
    // reachable only through the relay (no TCP listener, no WebRTC)
    const config = { listen: [], relays: relay.multiaddrs, connectionLimits: { relayedIdleTimeout: 500 } }
    const [alice, bob, carol] = await Promise.all([net.node(config), net.node(config), net.node(config)])
    await reserved(bob)
    await bob.addContact('alice', alice.peerId.toString())
    await alice.addContact('bob', bob.peerId.toString())

    // alice connects through the relay and sends nothing (identify, DCUtR: libp2p's own)
    const relayed = await alice.libp2p.dial(bob.multiaddrs)
    expect(relayed.limits).toBeDefined()
    expect(relay.circuits).toBe(1)
    // the relay refuses carol a circuit to bob while alice's is open
    await expect(carol.libp2p.dial(bob.multiaddrs)).rejects.toThrow()

    await until(() => relayed.status === 'closed', { on: [alice.libp2p, 'connection:close'], what: 'alice\'s idle relayed connection to bob to close' })
    await until(() => relay.circuits === 0 && bob.libp2p.getConnections(alice.peerId).length === 0, { every: 50, what: () => `the circuit to go at the relay (${relay.circuits} open) and at bob` })

    await carol.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    const sent = await carol.send(bob.peerId, 'through the freed circuit')
    expect(sent).toMatchObject({ status: 'delivered', path: 'relayed' })
  })
})
