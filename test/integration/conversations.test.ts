import { describe, expect, it } from 'vitest'
import { nextMessages, useNetwork } from '../fixtures/network.js'

describe('the inbox of two nodes exchanging messages', () => {
  const net = useNetwork()

  it('lists conversations with the last message, unread counts, names and requests; markRead and sending read them', async () => {
    const alice = await net.node()
    const bob = await net.node()
    const carol = await net.node()
    for (const sender of [alice, carol]) await sender.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.addContact('alice', alice.peerId.toString())
    expect(bob.conversations()).toEqual([])

    const bobGets = nextMessages(bob, 3)
    const first = await alice.send(bob.peerId, 'one')
    await alice.send(bob.peerId, 'two')
    // carol is a stranger to bob: her message is a request
    await carol.send(bob.peerId, 'hello, stranger here')
    await bobGets

    const alicePeer = alice.peerId.toString()
    const carolPeer = carol.peerId.toString()
    expect(bob.conversations()).toEqual([
      { peerId: carolPeer, last: expect.objectContaining({ direction: 'in', preview: 'hello, stranger here', status: 'received' }), unread: 0, request: true },
      { peerId: alicePeer, name: 'alice', last: expect.objectContaining({ direction: 'in', preview: 'two', contentType: 'text/plain' }), unread: 2, request: false }
    ])
    // the sender's side: its own message, delivered, nothing unread
    expect(alice.conversations()).toEqual([
      { peerId: bob.peerId.toString(), last: expect.objectContaining({ id: expect.any(String), direction: 'out', preview: 'two', status: 'delivered' }), unread: 0, request: false }
    ])

    expect(bob.markRead('alice', { upTo: first.id })).toEqual({ peerId: alicePeer, unread: 1 })
    expect(bob.conversations().find(c => c.peerId === alicePeer)?.unread).toBe(1)
    expect(() => bob.markRead(alicePeer, { upTo: '0190f5c8-7d3a-7a8b-8c9d-000000000001' })).toThrow(expect.objectContaining({ name: 'InvalidMessageError' }))
    expect(() => bob.markRead(alicePeer, { upTo: 'nope' })).toThrow(expect.objectContaining({ name: 'InvalidMessageError' }))

    // bob answers: what came before is read, and his answer is the latest activity
    const aliceGets = nextMessages(alice, 1)
    await bob.send('alice', 'x'.repeat(150))
    await aliceGets
    const [latest] = bob.conversations()
    expect(latest).toMatchObject({ peerId: alicePeer, unread: 0, last: { direction: 'out', status: 'delivered' } })
    expect(Array.from(latest.last.preview)).toHaveLength(100)
    expect(latest.last.preview.endsWith('…')).toBe(true)
    expect(alice.conversations()[0]).toMatchObject({ unread: 1, last: { direction: 'in' } })
    expect(alice.markRead(bob.peerId)).toEqual({ peerId: bob.peerId.toString(), unread: 0 })
    expect(alice.conversations()[0].unread).toBe(0)
  })

  it('pages back through a conversation by message id: every message once, in history order', async () => {
    const alice = await net.node()
    const bob = await net.node()
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.addContact('alice', alice.peerId.toString())
    // both write, so the history interleaves messages of the two directions
    for (let i = 0; i < 12; i++) {
      const got = nextMessages(bob, 1)
      await alice.send(bob.peerId, `a${i}`)
      await got
      if (i % 3 === 0) await bob.send(alice.peerId, `b${i}`)
    }
    const whole = bob.history('alice', { limit: 1000 }).map(m => m.id)
    expect(whole).toHaveLength(16)
    const paged: string[] = []
    let page = bob.history('alice', { limit: 5 })
    while (page.length > 0) {
      paged.unshift(...page.map(m => m.id))
      page = bob.history('alice', { limit: 5, beforeId: page[0].id })
    }
    expect(paged).toEqual(whole)
    expect(() => bob.history('alice', { beforeId: '0190f5c8-7d3a-7a8b-8c9d-000000000001' })).toThrow(expect.objectContaining({ name: 'InvalidMessageError' }))
    expect(() => bob.history('alice', { beforeId: 'nope' })).toThrow(expect.objectContaining({ name: 'InvalidMessageError' }))
  })
})
