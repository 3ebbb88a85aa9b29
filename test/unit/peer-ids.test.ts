import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { peerIdOf } from '../../common/peer-ids.js'

describe('peer IDs parsed once (common/peer-ids.ts)', () => {
  it('gives the peer a peer ID\'s text names, the same instance each time, its text already known', async () => {
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const text = peerId.toString()
    const parsed = peerIdOf(text)
    expect(parsed.equals(peerId)).toBe(true)
    expect(parsed.toString()).toBe(text)
    expect(peerIdOf(text)).toBe(parsed)
  })

  it('throws on text that is no peer ID, each time it is asked', () => {
    expect(() => peerIdOf('not a peer id')).toThrow()
    expect(() => peerIdOf('not a peer id')).toThrow()
  })

  it('stays bounded: past its size it starts over, and still parses what it forgot', async () => {
    const first = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const kept = peerIdOf(first)
    for (let i = 0; i < 1_100; i++) peerIdOf(peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString())
    const again = peerIdOf(first)
    expect(again).not.toBe(kept)
    expect(again.equals(kept)).toBe(true)
  })
})
