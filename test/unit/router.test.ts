import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it, vi } from 'vitest'
import { Router } from '../../node/network/router.js'
import type { NodeLibp2p } from '../../node/network/libp2p.js'
import type { Connection, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function fakeConnection (remotePeer: PeerId, id = 'c1'): Connection {
  return { id, remotePeer, status: 'open', remoteAddr: multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${remotePeer}`), abort: vi.fn(), limits: undefined } as unknown as Connection
}

/** A libp2p with one peer store entry, whose dials answer with `answer`. */
function fakeLibp2p (stored: Multiaddr[], answer: (addrs: Multiaddr[]) => Connection, open: Connection[] = []): { libp2p: NodeLibp2p, dial: ReturnType<typeof vi.fn> } {
  const dial = vi.fn(async (addrs: Multiaddr[]) => answer(addrs))
  const libp2p = {
    getConnections: () => open,
    peerStore: {
      get: async () => ({ addresses: stored.map(a => ({ multiaddr: a, isCertified: false })) }),
      merge: async () => {}
    },
    services: { dht: { routingTable: { size: 0 } } },
    dial
  } as unknown as NodeLibp2p
  return { libp2p, dial }
}

describe('the router', async () => {
  const bob = await peer()
  const mallory = await peer()
  const log = defaultLogger().forComponent('test:router')

  it('never dials an address of another peer for the peer', async () => {
    const { libp2p, dial } = fakeLibp2p([multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${mallory}`)], () => fakeConnection(mallory))
    await expect(new Router(libp2p, log).connect(bob)).rejects.toThrow(expect.objectContaining({ name: 'PeerUnreachableError' }))
    expect(dial).not.toHaveBeenCalled()
  })

  it('dials the peer\'s own addresses, each ending in the peer', async () => {
    const { libp2p, dial } = fakeLibp2p([multiaddr('/ip4/127.0.0.1/tcp/1'), multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${mallory}`)], () => fakeConnection(bob))
    const connection = await new Router(libp2p, log).connect(bob)
    expect(connection.remotePeer.equals(bob)).toBe(true)
    expect(dial.mock.calls[0][0].map((a: Multiaddr) => a.toString())).toEqual([`/ip4/127.0.0.1/tcp/1/p2p/${bob}`])
  })

  it('does not use, and closes, a connection it opened that another peer answered', async () => {
    const wrong = fakeConnection(mallory, 'new')
    const { libp2p } = fakeLibp2p([multiaddr('/ip4/127.0.0.1/tcp/1')], () => wrong)
    await expect(new Router(libp2p, log).connect(bob)).rejects.toThrow(/led to another peer/)
    expect(wrong.abort).toHaveBeenCalled()
  })

  it('does not take an open connection of another peer for the peer\'s', () => {
    const { libp2p } = fakeLibp2p([], () => fakeConnection(bob), [fakeConnection(mallory)])
    expect(new Router(libp2p, log).openConnection(bob)).toBeUndefined()
  })
})
