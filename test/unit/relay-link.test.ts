import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { decodeRelayLink, encodeRelayLink, isRelayLink, MAX_RELAY_LINK_ADDRS, MAX_RELAY_LINK_LENGTH, RELAY_LINK_PREFIX } from '../../common/relay-link.js'
import { relayAddressOf } from '../../daemon/relays-file.js'
import type { PeerId } from '@libp2p/interface'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** A link as anyone could write one, whatever it carries. */
function rawLink (value: unknown): string {
  return RELAY_LINK_PREFIX + Buffer.from(JSON.stringify(value)).toString('base64url')
}

describe('relay links', async () => {
  const relay = await peer()
  const other = await peer()

  it('round-trip the relay\'s peer ID and its own addresses, public ones first', () => {
    const addrs = [`/ip4/127.0.0.1/tcp/4001/p2p/${relay}`, `/ip4/192.168.1.2/tcp/4001/p2p/${relay}`, `/ip4/8.8.8.8/tcp/4001/p2p/${relay}`, `/dns4/relay.example.com/tcp/443/wss/p2p/${relay}`]
    const link = encodeRelayLink(relay, addrs.map(a => multiaddr(a)))
    expect(isRelayLink(link)).toBe(true)
    const decoded = decodeRelayLink(` ${link}\n`)
    expect(decoded.peerId.equals(relay)).toBe(true)
    expect(decoded.addrs.map(a => a.toString())).toEqual([addrs[2], addrs[3], addrs[1], addrs[0]])
    expect(relayAddressOf(link)).toBe(addrs[2])
  })

  it('adds the relay\'s /p2p/<id> to an address without one and leaves out circuits and other peers\' addresses', () => {
    const link = encodeRelayLink(relay, [
      multiaddr('/ip4/8.8.8.8/tcp/4001'),
      multiaddr(`/ip4/8.8.4.4/tcp/4001/p2p/${other}`),
      multiaddr(`/ip4/8.8.4.4/tcp/4001/p2p/${other}/p2p-circuit/p2p/${relay}`)
    ])
    expect(decodeRelayLink(link).addrs.map(a => a.toString())).toEqual([`/ip4/8.8.8.8/tcp/4001/p2p/${relay}`])
  })

  it('keeps within the address and length limits', () => {
    const many = Array.from({ length: 100 }, (_, i) => multiaddr(`/dns4/${'x'.repeat(60)}${i}.example.com/tcp/4001/p2p/${relay}`))
    const link = encodeRelayLink(relay, many)
    expect(link.length).toBeLessThanOrEqual(MAX_RELAY_LINK_LENGTH)
    const decoded = decodeRelayLink(link)
    expect(decoded.addrs.length).toBeGreaterThan(0)
    expect(decoded.addrs.length).toBeLessThanOrEqual(MAX_RELAY_LINK_ADDRS)
  })

  it('refuses hostile or damaged links with a clear error', () => {
    const addr = `/ip4/8.8.8.8/tcp/4001/p2p/${relay}`
    const cases: Array<[string, RegExp]> = [
      ['parley:abc', /not a relay link/],
      [RELAY_LINK_PREFIX + 'x'.repeat(MAX_RELAY_LINK_LENGTH), /over the 4096-character limit/],
      [RELAY_LINK_PREFIX + '!!!', /damaged/],
      [RELAY_LINK_PREFIX, /damaged/],
      [encodeRelayLink(relay, [multiaddr(addr)]) + 'x!', /damaged/],
      [encodeRelayLink(relay, [multiaddr(addr)]).replace(/^(.{30})/, '$1 '), /damaged/],
      [rawLink(null), /damaged/],
      [rawLink([1, 2]), /damaged/],
      [rawLink({ v: 1, p: relay.toString(), a: [1] }), /damaged/],
      [rawLink({ v: 2, p: relay.toString(), a: [addr] }), /version 2/],
      [rawLink({ p: relay.toString(), a: [addr] }), /version undefined/],
      [rawLink({ v: 1, p: 'not-a-peer', a: [addr] }), /damaged/],
      [rawLink({ v: 1, p: relay.toString(), a: ['/not/a/multiaddr'] }), /damaged/],
      [rawLink({ v: 1, p: relay.toString(), a: [] }), /no address/],
      [rawLink({ v: 1, p: relay.toString(), a: Array.from({ length: MAX_RELAY_LINK_ADDRS + 1 }, () => '/ip4/1.2.3.4/tcp/1') }), /17 addresses/],
      // an address of another peer would make the node reserve on someone else
      [rawLink({ v: 1, p: relay.toString(), a: [`/ip4/8.8.8.8/tcp/4001/p2p/${other}`] }), /does not end in the relay's own/],
      [rawLink({ v: 1, p: relay.toString(), a: ['/ip4/8.8.8.8/tcp/4001'] }), /does not end in the relay's own/],
      [rawLink({ v: 1, p: relay.toString(), a: [`/ip4/8.8.8.8/tcp/4001/p2p/${other}/p2p-circuit/p2p/${relay}`] }), /does not end in the relay's own/]
    ]
    for (const [link, error] of cases) {
      expect(() => decodeRelayLink(link), link.slice(0, 80)).toThrow(error)
    }
  })

  it('a relays add argument: a link or a multiaddr naming the relay', () => {
    const addr = `/ip4/8.8.8.8/tcp/4001/p2p/${relay}`
    expect(relayAddressOf(addr)).toBe(addr)
    expect(() => relayAddressOf('/ip4/8.8.8.8/tcp/4001')).toThrow(/must end in the relay's \/p2p\/<peer id>/)
    expect(() => relayAddressOf('hello')).toThrow(/neither a relay link/)
    expect(() => relayAddressOf(`${addr}/p2p-circuit/p2p/${other}`)).toThrow(/must end in the relay's/)
  })
})
