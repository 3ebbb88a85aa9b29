import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { addressesOf, isAddressOf } from '../../node/network/peer-addresses.js'
import type { PeerId } from '@libp2p/interface'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

describe('addresses of a peer', async () => {
  const bob = await peer()
  const mallory = await peer()
  const relay = await peer()
  const strings = (addrs: string[]): string[] => addressesOf(bob, addrs.map(a => multiaddr(a))).map(a => a.toString())

  it('keeps an address ending in the peer itself', () => {
    expect(strings([`/ip4/127.0.0.1/tcp/1/p2p/${bob}`])).toEqual([`/ip4/127.0.0.1/tcp/1/p2p/${bob}`])
  })

  it('drops an address ending in another peer', () => {
    expect(strings([`/ip4/127.0.0.1/tcp/1/p2p/${mallory}`])).toEqual([])
    expect(isAddressOf(bob, multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${mallory}`))).toBe(false)
  })

  it('appends the peer to an address that names nobody', () => {
    expect(strings(['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/udp/2/quic-v1'])).toEqual([
      `/ip4/127.0.0.1/tcp/1/p2p/${bob}`,
      `/ip4/127.0.0.1/udp/2/quic-v1/p2p/${bob}`
    ])
  })

  it('reads the destination of a relay circuit after /p2p-circuit, not the relay', () => {
    const via = `/ip4/203.0.113.7/tcp/4001/p2p/${relay}/p2p-circuit`
    expect(strings([`${via}/p2p/${bob}`, `${via}/webrtc/p2p/${bob}`])).toEqual([`${via}/p2p/${bob}`, `${via}/webrtc/p2p/${bob}`])
    // a circuit with no destination leads to whoever asks: to the peer
    expect(strings([via])).toEqual([`${via}/p2p/${bob}`])
    // through bob's own relay to mallory is not bob's address
    expect(strings([`${via}/p2p/${mallory}`, `/ip4/203.0.113.7/tcp/4001/p2p/${bob}/p2p-circuit/p2p/${mallory}`])).toEqual([])
  })

  it('drops an address that names the peer and then another one', () => {
    expect(strings([`/ip4/127.0.0.1/tcp/1/p2p/${bob}/webrtc/p2p/${mallory}`])).toEqual([])
  })

  it('lists each address once', () => {
    expect(strings(['/ip4/127.0.0.1/tcp/1', `/ip4/127.0.0.1/tcp/1/p2p/${bob}`])).toEqual([`/ip4/127.0.0.1/tcp/1/p2p/${bob}`])
  })
})
