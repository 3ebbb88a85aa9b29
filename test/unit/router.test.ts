import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it, vi } from 'vitest'
import { DHT_RECORD_AFTER, Router } from '../../node/network/router.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { RouterComponents } from '../../node/network/router.js'
import type { AbortOptions, Connection, PeerId, PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function fakeConnection (remotePeer: PeerId, id = 'c1', remoteAddr = multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${remotePeer}`)): Connection {
  return { id, remotePeer, status: 'open', remoteAddr, abort: vi.fn(), limits: undefined } as unknown as Connection
}

interface Lookups {
  /** How many peers the DHT has to ask. */
  dhtPeers?: number
  findPeer?: (peer: PeerId, options: AbortOptions) => Promise<PeerInfo>
  lookup?: (peer: PeerId, options: AbortOptions) => Promise<Multiaddr[]>
  clock?: FakeClock
}

/** Router components with one peer store entry, whose dials answer with `answer`; `calls` records the order of dials, lookups and merges. */
function fakeComponents (stored: Multiaddr[], answer: (addrs: Multiaddr[]) => Connection, open: Connection[] = [], lookups: Lookups = {}): {
  components: RouterComponents
  dial: ReturnType<typeof vi.fn>
  merge: ReturnType<typeof vi.fn>
  findPeer: ReturnType<typeof vi.fn>
  lookup: ReturnType<typeof vi.fn>
  calls: string[]
} {
  const calls: string[] = []
  const dial = vi.fn(async (addrs: Multiaddr[]) => { calls.push('dial'); return answer(addrs) })
  const merge = vi.fn(async () => { calls.push('merge') })
  const findPeer = vi.fn(async (peer: PeerId, options: AbortOptions) => {
    calls.push('findPeer')
    return lookups.findPeer == null ? { id: peer, multiaddrs: [] } : lookups.findPeer(peer, options)
  })
  const lookup = vi.fn(async (peer: PeerId, options: AbortOptions) => {
    calls.push('lookup')
    return lookups.lookup == null ? [] : lookups.lookup(peer, options)
  })
  const components: RouterComponents = {
    getConnections: (peer?: PeerId) => open.filter(c => peer == null || c.remotePeer.equals(peer)),
    dial,
    peerStore: {
      get: (async () => ({ addresses: stored.map(a => ({ multiaddr: a, isCertified: false })) })) as unknown as RouterComponents['peerStore']['get'],
      merge: merge as unknown as RouterComponents['peerStore']['merge']
    },
    peerRouting: { findPeer },
    dhtPeers: () => lookups.dhtPeers ?? 0,
    peerRecords: { lookup },
    logger: defaultLogger(),
    clock: lookups.clock ?? new FakeClock()
  }
  return { components, dial, merge, findPeer, lookup, calls }
}

/** A call that never answers by itself, only fails when its signal aborts. */
async function hang (options: AbortOptions): Promise<never> {
  return new Promise((resolve, reject) => {
    options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true })
  })
}

describe('the router', async () => {
  const bob = await peer()
  const mallory = await peer()
  const relay = await peer()
  const relayed = (id: string): Connection => fakeConnection(bob, id, multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${relay}/p2p-circuit/p2p/${bob}`))

  it('never dials an address of another peer for the peer', async () => {
    const { components, dial } = fakeComponents([multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${mallory}`)], () => fakeConnection(mallory))
    await expect(new Router(components).connect(bob)).rejects.toThrow(expect.objectContaining({ name: 'PeerUnreachableError' }))
    expect(dial).not.toHaveBeenCalled()
  })

  it('dials the peer\'s own addresses, each ending in the peer', async () => {
    const { components, dial } = fakeComponents([multiaddr('/ip4/127.0.0.1/tcp/1'), multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${mallory}`)], () => fakeConnection(bob))
    const connection = await new Router(components).connect(bob)
    expect(connection.remotePeer.equals(bob)).toBe(true)
    expect(dial.mock.calls[0][0].map((a: Multiaddr) => a.toString())).toEqual([`/ip4/127.0.0.1/tcp/1/p2p/${bob}`])
  })

  it('does not use, and closes, a connection it opened that another peer answered', async () => {
    const wrong = fakeConnection(mallory, 'new')
    const { components } = fakeComponents([multiaddr('/ip4/127.0.0.1/tcp/1')], () => wrong)
    await expect(new Router(components).connect(bob)).rejects.toThrow(/led to another peer/)
    expect(wrong.abort).toHaveBeenCalled()
  })

  it('does not close a connection of another peer that was open before the dial', async () => {
    const existing = fakeConnection(mallory, 'existing')
    const { components } = fakeComponents([multiaddr('/ip4/127.0.0.1/tcp/1')], () => existing, [existing])
    await expect(new Router(components).connect(bob)).rejects.toThrow(/led to another peer/)
    expect(existing.abort).not.toHaveBeenCalled()
  })

  it('does not take an open connection of another peer for the peer\'s', () => {
    const { components } = fakeComponents([], () => fakeConnection(bob), [fakeConnection(mallory)])
    expect(new Router(components).openConnection(bob)).toBeUndefined()
  })

  it('prefers an open direct connection over a relayed one, and dials nothing then', async () => {
    const direct = fakeConnection(bob, 'direct')
    const { components, dial } = fakeComponents([multiaddr('/ip4/127.0.0.1/tcp/1')], () => fakeConnection(bob), [relayed('relayed'), direct])
    const router = new Router(components)
    expect(router.openConnection(bob)?.id).toBe('direct')
    expect((await router.connect(bob)).id).toBe('direct')
    expect(dial).not.toHaveBeenCalled()
  })

  it('uses an open relayed connection when there is no direct one', () => {
    const { components } = fakeComponents([], () => fakeConnection(bob), [relayed('relayed')])
    expect(new Router(components).openConnection(bob)?.id).toBe('relayed')
  })

  it('dials the known addresses first, without asking the DHT when they answer', async () => {
    const { components, calls } = fakeComponents([multiaddr('/ip4/127.0.0.1/tcp/1')], () => fakeConnection(bob), [], { dhtPeers: 3 })
    await new Router(components).connect(bob)
    expect(calls).toEqual(['dial'])
  })

  it('dials anew, forced, when libp2p hands back an open connection that carries nothing (WebRTC with ICE disconnected)', async () => {
    const circuit = multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${relay}/p2p-circuit`)
    const stalled = { ...fakeConnection(bob, 'webrtc', circuit.encapsulate(`/webrtc/p2p/${bob}`)), maConn: { peerConnection: { connectionState: 'disconnected' } } } as unknown as Connection
    const fresh = relayed('fresh')
    const { components, dial } = fakeComponents([circuit], () => dial.mock.calls.length === 1 ? stalled : fresh, [stalled])
    const router = new Router(components)
    expect(router.openConnection(bob)).toBeUndefined()
    expect((await router.connect(bob)).id).toBe('fresh')
    expect(dial.mock.calls.map(call => call[1]?.force === true)).toEqual([false, true])
  })

  it('leaves WebRTC addresses out of a dial when others exist', async () => {
    const circuit = multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${relay}/p2p-circuit`)
    const { components, dial } = fakeComponents([circuit.encapsulate('/webrtc'), circuit], () => fakeConnection(bob))
    await new Router(components).connect(bob)
    expect(dial.mock.calls[0][0].map((a: Multiaddr) => a.toString())).toEqual([`${circuit.toString()}/p2p/${bob}`])
  })

  it('asks the DHT for the peer, then for its peer record, when the known addresses fail', async () => {
    const fromRecord = multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${relay}/p2p-circuit`)
    const { components, dial, calls } = fakeComponents([multiaddr('/ip4/127.0.0.1/tcp/1')], (addrs) => {
      if (addrs[0].toString().includes('p2p-circuit')) return fakeConnection(bob)
      throw new Error('connection refused')
    }, [], {
      dhtPeers: 1,
      findPeer: async () => { throw new Error('not found') },
      lookup: async () => [fromRecord]
    })
    const connection = await new Router(components).connect(bob)
    expect(connection.remotePeer.equals(bob)).toBe(true)
    expect(calls).toEqual(['dial', 'findPeer', 'lookup', 'dial', 'merge'])
    expect(dial.mock.calls[1][0].map((a: Multiaddr) => a.toString())).toEqual([`${fromRecord.toString()}/p2p/${bob}`])
  })

  it('asks for the peer record too once the peer lookup has run 2 s without an answer, and ends the lookup still running once connected', async () => {
    const clock = new FakeClock()
    const asked = Promise.withResolvers<void>()
    let findPeerSignal: AbortSignal | undefined
    const { components, calls } = fakeComponents([], () => fakeConnection(bob), [], {
      dhtPeers: 1,
      clock,
      findPeer: async (_, options) => { findPeerSignal = options.signal; asked.resolve(); return hang(options) },
      lookup: async () => [multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${relay}/p2p-circuit`)]
    })
    const connecting = new Router(components).connect(bob)
    await asked.promise
    clock.advance(DHT_RECORD_AFTER - 1)
    expect(calls).toEqual(['findPeer'])
    clock.advance(1)
    const connection = await connecting
    expect(connection.remotePeer.equals(bob)).toBe(true)
    expect(calls).toEqual(['findPeer', 'lookup', 'dial', 'merge'])
    // the peer reached, the lookup still running is ended, and its timeout cleared
    expect(findPeerSignal?.aborted).toBe(true)
    expect(clock.pending).toBe(0)
  })

  it('asks for the peer record at once when the peer lookup\'s answer leads nowhere', async () => {
    const fromRecord = multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${relay}/p2p-circuit`)
    const { components, dial, calls } = fakeComponents([], (addrs) => {
      if (addrs[0].toString().includes('p2p-circuit')) return fakeConnection(bob)
      throw new Error('connection refused')
    }, [], {
      dhtPeers: 1,
      findPeer: async (peer) => ({ id: peer, multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/3')] }),
      lookup: async () => [fromRecord]
    })
    // no time passes on the fake clock: the failed dial itself starts the record lookup
    const connection = await new Router(components).connect(bob)
    expect(connection.remotePeer.equals(bob)).toBe(true)
    expect(calls).toEqual(['findPeer', 'dial', 'lookup', 'dial', 'merge'])
    expect(dial.mock.calls[1][0].map((a: Multiaddr) => a.toString())).toEqual([`${fromRecord.toString()}/p2p/${bob}`])
  })

  it('gives the two DHT lookups 15 s together, then says why neither reached the peer', async () => {
    const clock = new FakeClock()
    const findPeerAsked = Promise.withResolvers<void>()
    const lookupAsked = Promise.withResolvers<void>()
    const { components } = fakeComponents([], () => fakeConnection(bob), [], {
      dhtPeers: 1,
      clock,
      findPeer: async (_, options) => { findPeerAsked.resolve(); return hang(options) },
      lookup: async (_, options) => { lookupAsked.resolve(); return hang(options) }
    })
    const connecting = new Router(components).connect(bob)
    await findPeerAsked.promise
    clock.advance(DHT_RECORD_AFTER)
    await lookupAsked.promise
    clock.advance(15_000 - DHT_RECORD_AFTER - 1)
    expect(clock.pending).toBe(1)
    clock.advance(1)
    await expect(connecting).rejects.toThrow(/DHT peer lookup: .*timeout.*; DHT peer record: .*timeout/)
    expect(clock.pending).toBe(0)
  })

  it('drops the addresses a DHT answer gives that name another peer', async () => {
    const own = multiaddr('/ip4/127.0.0.1/tcp/3')
    const { components, dial, merge } = fakeComponents([], () => fakeConnection(bob), [], {
      dhtPeers: 1,
      findPeer: async (peer) => ({ id: peer, multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/4/p2p/${mallory}`), own] })
    })
    await new Router(components).connect(bob)
    expect(dial.mock.calls[0][0].map((a: Multiaddr) => a.toString())).toEqual([`${own.toString()}/p2p/${bob}`])
    expect(merge.mock.calls[0][1].multiaddrs.map((a: Multiaddr) => a.toString())).toEqual([`${own.toString()}/p2p/${bob}`])
  })

  it('keeps the addresses a lookup gave only once the peer answered on them', async () => {
    const found = multiaddr('/ip4/127.0.0.1/tcp/3')
    const answered = fakeComponents([], () => fakeConnection(bob), [], {
      dhtPeers: 1,
      findPeer: async (peer) => ({ id: peer, multiaddrs: [found] })
    })
    await new Router(answered.components).connect(bob)
    expect(answered.calls).toEqual(['findPeer', 'dial', 'merge'])

    const wrong = fakeComponents([], () => fakeConnection(mallory, 'new'), [], {
      dhtPeers: 1,
      findPeer: async (peer) => ({ id: peer, multiaddrs: [found] })
    })
    await expect(new Router(wrong.components).connect(bob)).rejects.toThrow(/DHT peer lookup: an address of .* led to another peer/)
    expect(wrong.merge).not.toHaveBeenCalled()
  })

  it('says so when the DHT has nobody to ask, and asks nobody', async () => {
    const { components, findPeer, lookup } = fakeComponents([], () => fakeConnection(bob), [], { dhtPeers: 0 })
    await expect(new Router(components).connect(bob)).rejects.toThrow(/no DHT peers to ask/)
    expect(findPeer).not.toHaveBeenCalled()
    expect(lookup).not.toHaveBeenCalled()
  })

  it('rejoins the DHT when its routing table is empty, then looks the peer up', async () => {
    const lookups: Lookups = { dhtPeers: 0, findPeer: async (p) => ({ id: p, multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/9/p2p/${bob}`)] }) }
    const { components, findPeer, dial } = fakeComponents([], () => fakeConnection(bob), [], lookups)
    const rejoinDHT = vi.fn(async () => { lookups.dhtPeers = 2; return 2 })
    const connection = await new Router({ ...components, rejoinDHT }).connect(bob)
    expect(connection.remotePeer.equals(bob)).toBe(true)
    expect(rejoinDHT).toHaveBeenCalledOnce()
    expect(findPeer).toHaveBeenCalledOnce()
    expect(dial).toHaveBeenCalledOnce()
  })

  it('rejoins the DHT once for connects waiting on it together', async () => {
    const lookups: Lookups = { dhtPeers: 0 }
    const { components } = fakeComponents([], () => fakeConnection(bob), [], lookups)
    const rejoined = Promise.withResolvers<number>()
    const rejoinDHT = vi.fn(async () => rejoined.promise)
    const router = new Router({ ...components, rejoinDHT })
    const both = Promise.allSettled([router.connect(bob), router.connect(mallory)])
    await vi.waitFor(() => { expect(rejoinDHT).toHaveBeenCalled() })
    rejoined.resolve(0)
    expect((await both).map(r => r.status)).toEqual(['rejected', 'rejected'])
    expect(rejoinDHT).toHaveBeenCalledOnce()
  })

  it('says the DHT has nobody to ask when rejoining it found nobody either', async () => {
    const { components, findPeer } = fakeComponents([], () => fakeConnection(bob), [], { dhtPeers: 0 })
    const rejoinDHT = vi.fn(async () => { throw new Error('bootstrap peers unreachable') })
    await expect(new Router({ ...components, rejoinDHT }).connect(bob)).rejects.toThrow(/no DHT peers to ask/)
    expect(rejoinDHT).toHaveBeenCalledOnce()
    expect(findPeer).not.toHaveBeenCalled()
  })

  it('does not rejoin the DHT while its routing table has peers', async () => {
    const { components } = fakeComponents([], () => fakeConnection(bob), [], { dhtPeers: 1 })
    const rejoinDHT = vi.fn(async () => 1)
    await expect(new Router({ ...components, rejoinDHT }).connect(bob)).rejects.toThrow(/no new addresses/)
    expect(rejoinDHT).not.toHaveBeenCalled()
  })

  it('says which source led nowhere when none of them reach the peer', async () => {
    const { components } = fakeComponents([], () => fakeConnection(bob), [], { dhtPeers: 1 })
    await expect(new Router(components).connect(bob)).rejects.toThrow(/DHT peer lookup: no new addresses; DHT peer record: no new addresses/)
  })

  it('stops at once when the caller aborts', async () => {
    const controller = new AbortController()
    const { components, findPeer } = fakeComponents([multiaddr('/ip4/127.0.0.1/tcp/1')], () => {
      controller.abort()
      throw new Error('aborted')
    }, [], { dhtPeers: 1 })
    await expect(new Router(components).connect(bob, { signal: controller.signal })).rejects.toThrow(expect.objectContaining({ name: 'AbortError' }))
    expect(findPeer).not.toHaveBeenCalled()
  })
})
