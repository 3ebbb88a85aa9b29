import { describe, expect, it } from 'vitest'
import { nextMessages, useNetwork } from '../fixtures/network.js'

describe('two nodes on TCP loopback', () => {
  const net = useNetwork()

  it('exchange messages both ways over a direct connection', async () => {
    const alice = await net.node()
    const bob = await net.node()
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })

    const bobGets = nextMessages(bob, 1)
    const toBob = await alice.send(bob.peerId, 'hello bob')
    expect(toBob).toMatchObject({ status: 'delivered', path: 'direct' })
    const [atBob] = await bobGets
    expect(atBob).toMatchObject({
      id: toBob.id,
      from: alice.peerId.toString(),
      seq: 1,
      body: 'hello bob',
      contentType: 'text/plain',
      path: 'direct'
    })
    expect(atBob.receivedAt).toBeGreaterThanOrEqual(atBob.sentAt)

    const aliceGets = nextMessages(alice, 2)
    const replies = [await bob.send(alice.peerId.toString(), 'hi alice'), await bob.send(alice.peerId, 'how are you? ✓')]
    expect(replies.map(r => r.path)).toEqual(['direct', 'direct'])
    const atAlice = await aliceGets
    expect(atAlice.map(m => [m.from, m.seq, m.body])).toEqual([
      [bob.peerId.toString(), 1, 'hi alice'],
      [bob.peerId.toString(), 2, 'how are you? ✓']
    ])
  })
})
