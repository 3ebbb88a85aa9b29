import * as lp from 'it-length-prefixed'
import { describe, expect, it } from 'vitest'
import { idFromString } from '../../node/message-id.js'
import { ChatMessage, Frame, PROTOCOL } from '../../protocols/im/index.js'
import { nextMessages, useNetwork } from '../fixtures/network.js'
import { varint } from '../unit/im-helpers.js'
import type { ParleyNode } from '../../index.js'

/** Frame{message} bytes with an extra, unknown field 15 appended to the message. */
function frameWithUnknownField (message: ChatMessage, extra: Uint8Array): Uint8Array {
  const inner = [...ChatMessage.encode(message), (15 << 3) | 2, ...varint(extra.byteLength), ...extra]
  return new Uint8Array([(1 << 3) | 2, ...varint(inner.length), ...inner])
}

/** Writes raw frames from `from` to `to` on an /im stream of its own and reads the acks. */
async function rawSend (from: ParleyNode, to: ParleyNode, frames: Uint8Array[]): Promise<Frame[]> {
  const stream = await from.libp2p.dialProtocol(to.multiaddrs, PROTOCOL)
  for (const frame of frames) {
    stream.send(lp.encode.single(frame))
  }
  const acks: Frame[] = []
  for await (const buf of lp.decode(stream)) {
    acks.push(Frame.decode(buf))
    if (acks.length === frames.length) break
  }
  await stream.close()
  return acks
}

describe('sender identity', () => {
  const net = useNetwork()

  it('is the authenticated peer of the connection, whatever the message says', async () => {
    const alice = await net.node()
    const bob = await net.node()
    const mallory = await net.node()
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })

    const atBob = nextMessages(bob, 2)
    const real = await alice.send(bob.peerId, 'meet at noon')

    // mallory replays alice's message id and puts alice's peer ID in the body and
    // in an unknown field: none of it may make bob think the message is alice's
    const aliceId = new TextEncoder().encode(alice.peerId.toString())
    const forged = frameWithUnknownField({
      id: idFromString(real.id),
      seq: 1n, // mallory's conversation with bob starts at 1 like any other
      sentAt: BigInt(Date.now()),
      body: `from: ${alice.peerId.toString()} - meet at midnight`
    }, aliceId)
    const [ack] = await rawSend(mallory, bob, [forged])

    // OK, not DUPLICATE: exactly-once is per (authenticated sender, id)
    expect(ack.ack?.status).toBe('OK')
    const [first, second] = await atBob
    expect(first).toMatchObject({ from: alice.peerId.toString(), body: 'meet at noon' })
    expect(second.body).toContain('meet at midnight')
    expect(second.from).toBe(mallory.peerId.toString())
  })
})
