import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { Ack } from '../../protocols/im/index.js'
import { Policy } from '../../node/policy.js'
import { Reception } from '../../node/reception.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { ReceiveOptions } from '../../node/inbox/inbox.js'
import type { InboundMessage, Refusal } from '../../protocols/im/index.js'
import type { Connection, PeerId } from '@libp2p/interface'

const LIMITS = { retryAfterMs: 5_000, maxHeldPerPeer: 10, requestMessages: 2, strangerBurst: 100 }

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function message (from: PeerId, body = 'hi', seq = 1): InboundMessage {
  return { id: new Uint8Array(16).fill(seq), from, seq, sentAt: 0, body, contentType: 'text/plain', path: 'direct', connection: {} as unknown as Connection }
}

/** A Reception over a real policy, with a stub inbox answering `result` and recording what it was given. */
function setup (result: 'stored' | 'duplicate' | 'held-full' = 'stored'): {
  reception: Reception
  policy: Policy
  received: Array<{ message: InboundMessage, options: ReceiveOptions }>
  refused: Refusal[]
  storedBytes: number[]
} {
  const clock = new FakeClock()
  const policy = new Policy(LIMITS, clock.now)
  const received: Array<{ message: InboundMessage, options: ReceiveOptions }> = []
  const refused: Refusal[] = []
  const storedBytes: number[] = []
  const reception = new Reception({
    policy,
    inbox: {
      receive: async (message, options = {}) => { received.push({ message, options }); return result },
      refused: (refusal) => { refused.push(refusal) }
    },
    storage: { stored: (bytes) => { storedBytes.push(bytes) } }
  }, { retryAfterMs: LIMITS.retryAfterMs, maxHeldPerPeer: LIMITS.maxHeldPerPeer })
  return { reception, policy, received, refused, storedBytes }
}

describe('Reception (the /im callbacks)', () => {
  it('stores a stranger\'s message as a request, and a contact\'s as an ordinary one, with the held limit', async () => {
    const { reception, policy, received, storedBytes } = setup()
    const stranger = await peer()
    const contact = await peer()
    policy.trust(contact.toString(), true)
    expect(reception.admit(stranger)).toEqual({ status: 'accept' })
    expect(await reception.store(message(stranger, 'héllo'))).toBe('stored')
    expect(await reception.store(message(contact))).toBe('stored')
    expect(received.map(r => r.options)).toEqual([{ request: true, maxHeld: 10 }, { request: false, maxHeld: 10 }])
    // UTF-8 bytes, counted towards the store's size check
    expect(storedBytes).toEqual([6, 2])
  })

  it('answers RATE_LIMITED once a stranger\'s request quota is used, and frees the quota of what was not stored', async () => {
    const duplicate = setup('duplicate')
    const stranger = await peer()
    // duplicates do not use the quota of two messages
    for (let i = 0; i < 3; i++) expect(await duplicate.reception.store(message(stranger))).toBe('duplicate')
    expect(duplicate.storedBytes).toEqual([])

    const { reception } = setup()
    expect(await reception.store(message(stranger))).toBe('stored')
    expect(await reception.store(message(stranger))).toBe('stored')
    expect(await reception.store(message(stranger))).toMatchObject({ status: 'rate-limited', retryAfterMs: expect.any(Number) })
    // and the peer is told to wait at admission from now on
    expect(reception.admit(stranger)).toMatchObject({ status: 'rate-limit' })
  })

  it('answers held-full as RATE_LIMITED for that message only', async () => {
    const { reception, policy } = setup('held-full')
    const contact = await peer()
    policy.trust(contact.toString(), true)
    expect(await reception.store(message(contact, 'later', 9))).toEqual({ status: 'rate-limited', retryAfterMs: LIMITS.retryAfterMs })
    expect(reception.admit(contact)).toEqual({ status: 'accept' })
  })

  it('blocks a blocked peer at admission, and neither stores its messages nor records its refused seqs', async () => {
    const { reception, policy, received, refused } = setup()
    const mallory = await peer()
    policy.block(mallory.toString(), true)
    expect(reception.admit(mallory)).toEqual({ status: 'block' })
    // blocked between admission and storing: told to wait, not stored
    expect(await reception.store(message(mallory))).toEqual({ status: 'rate-limited', retryAfterMs: LIMITS.retryAfterMs })
    reception.onRefused({ from: mallory, id: new Uint8Array(16), seq: 3n, status: Ack.Status.TOO_LARGE })
    expect(received).toEqual([])
    expect(refused).toEqual([])

    const alice = await peer()
    const refusal = { from: alice, id: new Uint8Array(16), seq: 3n, status: Ack.Status.TOO_LARGE }
    reception.onRefused(refusal)
    expect(refused).toEqual([refusal])
  })

  it('releases a stranger\'s reservation when the inbox fails', async () => {
    const clock = new FakeClock()
    const policy = new Policy(LIMITS, clock.now)
    let fail = true
    const reception = new Reception({
      policy,
      inbox: { receive: async () => { if (fail) throw new Error('disk'); return 'stored' as const }, refused: () => {} },
      storage: { stored: () => {} }
    }, LIMITS)
    const stranger = await peer()
    await expect(reception.store(message(stranger))).rejects.toThrow('disk')
    fail = false
    // the failed one did not use one of the two
    expect(await reception.store(message(stranger))).toBe('stored')
    expect(await reception.store(message(stranger))).toBe('stored')
    expect(policy.requestUsage()).toMatchObject({ peers: 1, messages: 2 })
  })

  it('answers at once, with no promise, when the inbox stores at once; and frees the quota of what it failed to store', async () => {
    const clock = new FakeClock()
    const policy = new Policy(LIMITS, clock.now)
    let answer: 'stored' | 'held-full' | 'throws' = 'stored'
    const stored: number[] = []
    const reception = new Reception({
      policy,
      inbox: {
        receive: () => {
          if (answer === 'throws') throw new Error('disk')
          return answer
        },
        refused: () => {}
      },
      storage: { stored: (bytes) => { stored.push(bytes) } }
    }, LIMITS)
    const stranger = await peer()
    expect(reception.store(message(stranger))).toBe('stored')
    answer = 'held-full'
    expect(reception.store(message(stranger, 'hi', 2))).toEqual({ status: 'rate-limited', retryAfterMs: LIMITS.retryAfterMs })
    answer = 'throws'
    expect(() => reception.store(message(stranger, 'hi', 3))).toThrow('disk')
    // only the one stored counts: against the quota of two, and the store's size
    expect(policy.requestUsage()).toMatchObject({ peers: 1, messages: 1 })
    expect(stored).toEqual([2])
  })
})
