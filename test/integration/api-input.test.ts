import { describe, expect, it } from 'vitest'
import { MAX_BODY_BYTES } from '../../protocols/im/index.js'
import { useNetwork } from '../fixtures/network.js'
import type { ParleyNode, ReceivedMessage } from '../../index.js'

describe('bad input at the API', () => {
  const net = useNetwork()

  async function pair (): Promise<{ alice: ParleyNode, bob: ParleyNode, inbox: ReceivedMessage[] }> {
    const alice = await net.node()
    const bob = await net.node()
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    const inbox: ReceivedMessage[] = []
    bob.addEventListener('message', evt => { inbox.push(evt.detail) })
    return { alice, bob, inbox }
  }

  it.each([
    ['an empty body', '', 'EmptyMessageError', /empty/],
    ['a body over 32 KiB', 'x'.repeat(MAX_BODY_BYTES + 1), 'MessageTooLargeError', /32768-byte limit/],
    ['a multi-byte body over 32 KiB of UTF-8', 'é'.repeat(MAX_BODY_BYTES / 2 + 1), 'MessageTooLargeError', /32770 bytes/]
  ])('rejects %s with a typed error and sends nothing', async (_what, body, name, message) => {
    const { alice, bob, inbox } = await pair()
    const err = await alice.send(bob.peerId, body).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).name).toBe(name)
    expect((err as Error).message).toMatch(message)
    // nothing went on the wire: no connection was even opened
    expect(alice.libp2p.getConnections(bob.peerId)).toHaveLength(0)
    expect(inbox).toHaveLength(0)
  })

  it.each([
    ['garbage', 'not-a-peer-id'],
    ['an empty string', ''],
    ['a CID-looking string', 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG'.slice(0, 20)]
  ])('rejects an invalid peer ID (%s) with InvalidPeerIdError', async (_what, peer) => {
    const { alice, inbox } = await pair()
    const err = await alice.send(peer, 'hello').catch((e: Error) => e)
    expect((err as Error).name).toBe('InvalidPeerIdError')
    expect((err as Error).message).toContain('is not a valid peer ID')
    expect(alice.libp2p.getConnections()).toHaveLength(0)
    expect(inbox).toHaveLength(0)
  })

  it('rejects sending to itself', async () => {
    const { alice } = await pair()
    const err = await alice.send(alice.peerId, 'hello me').catch((e: Error) => e)
    expect((err as Error).name).toBe('InvalidPeerIdError')
  })

  it('rejects a reply_to that is not a message id', async () => {
    const { alice, bob, inbox } = await pair()
    const err = await alice.send(bob.peerId, 'hi', { replyTo: 'nope' }).catch((e: Error) => e)
    expect((err as Error).name).toBe('InvalidMessageError')
    expect(inbox).toHaveLength(0)
  })
})
