import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it, vi } from 'vitest'
import { rejoinDHT } from '../../node/network/dht-rejoin.js'
import type { RejoinComponents } from '../../node/network/dht-rejoin.js'
import type { Connection, PeerId } from '@libp2p/interface'

const DHT = '/parley/kad/1.0.0'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function connectionTo (remotePeer: PeerId): Connection {
  return { remotePeer } as unknown as Connection
}

function components (connected: PeerId[], protocols: Map<string, string[]>, dial: RejoinComponents['dial'] = async (addr) => { throw new Error(`${addr.toString()} is down`) }): RejoinComponents & { added: string[], dial: ReturnType<typeof vi.fn> } {
  const added: string[] = []
  return {
    added,
    getConnections: () => connected.map(connectionTo),
    protocolsOf: async (p) => protocols.get(p.toString()) ?? [],
    dial: vi.fn(dial),
    addToRoutingTable: async (p) => { added.push(p.toString()) },
    log: defaultLogger().forComponent('test')
  }
}

describe('rejoining the DHT with an empty routing table', async () => {
  const relay = await peer()
  const chat = await peer()
  const bootstrapPeer = await peer()
  const bootstrap = [multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${bootstrapPeer}`)]

  it('adds the connected peers that serve the DHT, and dials nobody', async () => {
    const c = components([relay, chat, relay], new Map([[relay.toString(), [DHT, '/ipfs/id/1.0.0']], [chat.toString(), ['/im/1.0.0']]]))
    expect(await rejoinDHT(c, bootstrap, DHT)).toBe(1)
    expect(c.added).toEqual([relay.toString()])
    expect(c.dial).not.toHaveBeenCalled()
  })

  it('dials the bootstrap peers again when no connected peer serves the DHT', async () => {
    const c = components([chat], new Map([[chat.toString(), ['/im/1.0.0']]]), async () => connectionTo(bootstrapPeer))
    expect(await rejoinDHT(c, bootstrap, DHT)).toBe(1)
    expect(c.dial).toHaveBeenCalledWith(bootstrap[0], {})
    expect(c.added).toEqual([bootstrapPeer.toString()])
  })

  it('adds nobody it could not reach, and goes on to the next bootstrap peer', async () => {
    const other = await peer()
    const second = multiaddr(`/ip4/127.0.0.2/tcp/4001/p2p/${other}`)
    const c = components([], new Map(), async (addr) => {
      if (addr.equals(bootstrap[0])) throw new Error('refused')
      return connectionTo(other)
    })
    expect(await rejoinDHT(c, [...bootstrap, second], DHT)).toBe(1)
    expect(c.added).toEqual([other.toString()])
  })

  it('stops when its signal aborts', async () => {
    const controller = new AbortController()
    const c = components([], new Map(), async () => { controller.abort(); throw new Error('aborted') })
    await expect(rejoinDHT(c, [...bootstrap, bootstrap[0]], DHT, { signal: controller.signal })).rejects.toThrow()
    expect(c.dial).toHaveBeenCalledOnce()
    expect(c.added).toEqual([])
  })
})
