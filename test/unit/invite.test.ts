import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { decodeInvite, encodeInvite, INVITE_PREFIX, MAX_INVITE_ADDRS, MAX_INVITE_LENGTH } from '../../node/invite.js'
import type { PeerId } from '@libp2p/interface'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** An invite as anyone could write one, whatever it carries. */
function rawInvite (p: string, a: unknown[]): string {
  return INVITE_PREFIX + Buffer.from(JSON.stringify({ p, a })).toString('base64url')
}

describe('invites', async () => {
  const bob = await peer()
  const mallory = await peer()
  const relay = await peer()
  const circuit = (i: number): string => `/ip4/8.8.8.${i}/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${bob}`

  it('round-trip the peer ID and its addresses, each ending in the peer', () => {
    const addrs = [`/ip4/127.0.0.1/tcp/4001/p2p/${bob}`, circuit(1), `${circuit(2).replace(`/p2p/${bob}`, '')}/webrtc/p2p/${bob}`]
    const invite = encodeInvite(bob, addrs.map(a => multiaddr(a)))
    const decoded = decodeInvite(invite)
    expect(decoded.peerId.equals(bob)).toBe(true)
    expect(decoded.addrs.map(a => a.toString()).sort()).toEqual([...addrs].sort())
    // the peer ID is written once, not once per address
    expect(Buffer.from(invite.slice(INVITE_PREFIX.length), 'base64url').toString().split(bob.toString())).toHaveLength(2)
  })

  it('read one with surrounding white space, as pasted', () => {
    expect(decodeInvite(`  ${encodeInvite(bob, [multiaddr(circuit(1))])}\n`).addrs.map(a => a.toString())).toEqual([circuit(1)])
  })

  it('leave out addresses that lead to another peer', () => {
    const invite = rawInvite(bob.toString(), [`/ip4/127.0.0.1/tcp/4001/p2p/${mallory}`, circuit(1), `/ip4/8.8.4.4/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${mallory}`])
    expect(decodeInvite(invite).addrs.map(a => a.toString())).toEqual([circuit(1)])
  })

  it('refuse one over the length limit, saying so, before reading it', () => {
    const huge = INVITE_PREFIX + 'A'.repeat(1024 * 1024)
    expect(() => decodeInvite(huge)).toThrow(expect.objectContaining({ name: 'InvalidInviteError', message: expect.stringMatching(`over the ${MAX_INVITE_LENGTH}-character limit`) }))
  })

  it('refuse one with too many addresses, saying so', () => {
    const invite = rawInvite(bob.toString(), Array.from({ length: MAX_INVITE_ADDRS + 1 }, (_, i) => `/ip4/127.0.0.1/tcp/${i + 1}`))
    expect(invite.length).toBeLessThan(MAX_INVITE_LENGTH)
    expect(() => decodeInvite(invite)).toThrow(expect.objectContaining({ name: 'InvalidInviteError', message: expect.stringMatching(`${MAX_INVITE_ADDRS + 1} addresses, over the limit of ${MAX_INVITE_ADDRS}`) }))
  })

  it('written for a node with many addresses stay within the limits, public and relayed ones kept', () => {
    const addrs = [
      ...Array.from({ length: 20 }, (_, i) => `/ip4/10.0.0.${i + 1}/tcp/4001/p2p/${bob}`),
      ...Array.from({ length: 20 }, (_, i) => circuit(i + 1)),
      `/ip4/9.9.9.9/tcp/4001/p2p/${bob}`
    ]
    const invite = encodeInvite(bob, addrs.map(a => multiaddr(a)))
    expect(invite.length).toBeLessThanOrEqual(MAX_INVITE_LENGTH)
    const kept = decodeInvite(invite).addrs.map(a => a.toString())
    expect(kept).toHaveLength(MAX_INVITE_ADDRS)
    expect(kept[0]).toBe(`/ip4/9.9.9.9/tcp/4001/p2p/${bob}`)
    expect(kept.slice(1)).toEqual(Array.from({ length: MAX_INVITE_ADDRS - 1 }, (_, i) => circuit(i + 1)))
  })
})
