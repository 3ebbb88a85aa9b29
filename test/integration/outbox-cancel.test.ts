/**
 * A message to a peer that is never reachable (a valid peer ID nobody runs):
 * the sender sees it in the outbox, can cancel it, and without a cancel it
 * fails once the node's messageExpiry passes.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'

async function nobody (): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
}

describe('a message to an unreachable peer', () => {
  const net = useNetwork()

  it('is listed in the outbox; cancelling it rejects the waiting send, empties the outbox, and the history says why', async () => {
    const alice = await net.node()
    const peer = await nobody()
    const sending = alice.send(peer, 'are you there?', { timeout: 120_000 })
    sending.catch(() => {})
    const [item] = alice.outbox()
    expect(item).toMatchObject({ to: peer, direction: 'out', body: 'are you there?' })
    // a dial under way or its failure: either way it waits in the outbox
    expect(['queued', 'sending']).toContain(item.status)

    const cancelled = alice.cancel(item.id)
    expect(cancelled).toMatchObject({ id: item.id, status: 'failed', reason: 'cancelled by the sender' })
    await expect(sending).rejects.toMatchObject({ name: 'MessageCancelledError' })
    expect(alice.outbox()).toEqual([])
    expect(alice.status().outbox).toBe(0)
    expect(alice.history(peer)).toMatchObject([{ id: item.id, status: 'failed', reason: 'cancelled by the sender' }])

    expect(() => alice.cancel(item.id)).toThrow(expect.objectContaining({ name: 'MessageNotCancellableError', status: 'failed' }))
    expect(() => alice.cancel('0190f5c8-7d3a-7a8b-8c9d-000000000009')).toThrow(expect.objectContaining({ name: 'UnknownMessageError' }))
    expect(() => alice.cancel('nope')).toThrow(expect.objectContaining({ name: 'InvalidMessageError' }))

    // the conversation goes on: the next message takes the next seq and waits as before
    const next = alice.queue(peer, 'still there?')
    expect(alice.outbox()).toMatchObject([{ id: next, seq: 2 }])
  })

  it('fails as expired once messageExpiry passes, with a reason that says after how long', async () => {
    const alice = await net.node({ messageExpiry: 1_500 })
    const peer = await nobody()
    const sending = alice.send(peer, 'hello?', { timeout: 120_000 })
    await expect(sending).rejects.toMatchObject({ name: 'MessageExpiredError', message: expect.stringMatching(/expired: not delivered within 1500 ms/) })
    await until(() => alice.outbox().length === 0, { on: [alice, 'message:status'], what: 'an empty outbox', timeout: 10_000 })
    expect(alice.history(peer)).toMatchObject([{ status: 'failed', reason: 'expired: not delivered within 1500 ms' }])
  })
})
