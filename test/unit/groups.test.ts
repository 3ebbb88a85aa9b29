import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { decodePayload, encodePayload, fromHex, GroupPayload, signMessage } from '../../protocols/group/codec.js'
import { Groups, MAX_PENDING_PER_GROUP } from '../../node/group/index.js'
import { Store } from '../../node/store/index.js'
import type { GroupChange, GroupMessage } from '../../node/group/types.js'
import type { NewOutbound, StoredMessage } from '../../node/store/index.js'
import type { PrivateKey } from '@libp2p/interface'

/** A Groups with an in-memory store, whose carriers are kept instead of sent. */
async function member (): Promise<{ groups: Groups, id: string, key: PrivateKey, sent: NewOutbound[], shown: GroupMessage[], changes: GroupChange[], store: Store }> {
  const privateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey)
  const store = new Store()
  const sent: NewOutbound[] = []
  let seq = 0
  const groups = new Groups({
    peerId,
    privateKey,
    store,
    queue: (message) => {
      sent.push(message)
      return { ...message, seq: ++seq, direction: 'out', status: 'queued', createdAt: message.sentAt, request: false }
    },
    log: Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => { throw new Error('no') } }) as any
  })
  const shown: GroupMessage[] = []
  const changes: GroupChange[] = []
  groups.addEventListener('group:message', evt => { shown.push(evt.detail) })
  groups.addEventListener('group:change', evt => { changes.push(evt.detail) })
  return { groups, id: peerId.toString(), key: privateKey, sent, shown, changes, store }
}

let now = 1_000
/** Hands `to` the carriers `from` queued for it (all, or those given), as its inbox presents them. */
async function deliver (from: { id: string, sent: NewOutbound[] }, to: { groups: Groups, id: string }, carriers = from.sent.filter(c => c.peer === to.id), receivedAt?: number): Promise<void> {
  for (const c of carriers) {
    const message: StoredMessage = { id: c.id, peer: from.id, direction: 'in', seq: 0, body: '', contentType: 'text/plain', sentAt: c.sentAt, receivedAt: receivedAt ?? ++now, createdAt: now, status: 'presented', path: 'direct', request: false, group: c.group }
    await to.groups.receive(message)
  }
}

describe('groups (node/group)', () => {
  it('a group message waits for the ops it was sent under, then is shown; waiting ones are shown in the order they were presented', async () => {
    const [alice, bob, carol] = await Promise.all([member(), member(), member()])
    const group = await alice.groups.create('g', [bob.id, carol.id])
    await deliver(alice, bob)
    await deliver(alice, carol)
    alice.sent.length = 0
    bob.sent.length = 0
    // alice makes bob an admin: carol does not hear of it yet
    await alice.groups.change(group.id, { kind: 'add-admin', target: bob.id })
    const opCarriers = alice.sent.splice(0)
    await deliver(alice, bob, opCarriers.filter(c => c.peer === bob.id))
    // bob writes under heads carol does not know; his carriers reach carol out of
    // their arrival order (a held one keeps its early receivedAt)
    await bob.groups.send(group.id, 'one')
    await bob.groups.send(group.id, 'two')
    const [one, two] = bob.sent.filter(c => c.peer === carol.id)
    await deliver(bob, carol, [one], 500)
    await deliver(bob, carol, [two], 100)
    expect(carol.shown).toEqual([])
    expect(carol.store.groups.pendingCount(group.id)).toBe(2)
    await deliver(alice, carol, opCarriers.filter(c => c.peer === carol.id))
    expect(carol.shown.map(m => [m.from, m.seq, m.body])).toEqual([[bob.id, 1, 'one'], [bob.id, 2, 'two']])
    expect(carol.store.groups.pendingCount(group.id)).toBe(0)
    // shown once: a repeat of the same (group, sender, seq) is not shown again
    await deliver(bob, carol, [one])
    expect(carol.shown).toHaveLength(2)
  })

  it('answers a sender writing under stale heads with the whole log, once per state of the log', async () => {
    const [alice, bob, carol] = await Promise.all([member(), member(), member()])
    const group = await alice.groups.create('g', [bob.id, carol.id])
    await deliver(alice, bob)
    await deliver(alice, carol)
    alice.sent.length = 0
    await alice.groups.change(group.id, { kind: 'rename', name: 'renamed' })
    await deliver(alice, carol, alice.sent.filter(c => c.peer === carol.id))
    // bob has not heard of the rename, and writes twice
    await bob.groups.send(group.id, 'stale 1')
    await bob.groups.send(group.id, 'stale 2')
    carol.sent.length = 0
    await deliver(bob, carol)
    expect(carol.shown.map(m => m.body)).toEqual(['stale 1', 'stale 2'])
    expect(carol.sent.map(c => c.peer)).toEqual([bob.id])
    const answer = decodePayload(carol.sent[0].group as Uint8Array)
    expect(answer.ops).toHaveLength(2)
    bob.changes.length = 0
    await deliver(carol, bob)
    expect(bob.groups.get(group.id).name).toBe('renamed')
    expect(bob.changes.map(c => c.ops)).toEqual([['rename']])
  })

  it('drops a message whose signature is not its sender\'s, one from a non-member, one forwarded, and a group it was never put in', async () => {
    const [alice, bob, mallory] = await Promise.all([member(), member(), member()])
    const group = await alice.groups.create('g', [bob.id])
    await deliver(alice, bob)
    // mallory's own group, naming alice but not bob: bob keeps nothing of it
    await mallory.groups.create('other', [alice.id])
    await deliver(mallory, bob, mallory.sent.map(c => ({ ...c, peer: bob.id })))
    expect(bob.groups.list().map(g => g.id)).toEqual([group.id])
    // alice writes; her payload with a flipped byte in the signature, or sent on by mallory
    await alice.groups.send(group.id, 'hello')
    const genuine = alice.sent.filter(c => c.peer === bob.id).at(-1) as NewOutbound
    const payload = GroupPayload.decode(genuine.group as Uint8Array)
    const signature = Uint8Array.from(payload.message?.signature ?? [])
    signature[0] ^= 1
    const forged = { ...genuine, group: encodePayload({ ops: [], message: { message: payload.message?.message as Uint8Array<ArrayBuffer>, signature } }) }
    await deliver(alice, bob, [forged])
    await deliver({ id: mallory.id, sent: [] }, bob, [genuine])
    expect(bob.shown).toEqual([])
    await deliver(alice, bob, [genuine])
    expect(bob.shown.map(m => m.body)).toEqual(['hello'])
    // mallory, no member, writes to bob's group under its heads, signed by herself
    const signed = await signMessage(mallory.key, { group: fromHex(group.id), sender: peerIdFromPrivateKey(mallory.key).toMultihash().bytes as Uint8Array<ArrayBuffer>, id: new Uint8Array(16), seq: 1n, lamport: 2n, heads: [fromHex(group.id)], sentAt: 1n, body: 'let me in' })
    await deliver(mallory, bob, [{ ...genuine, id: 'm', group: encodePayload({ ops: [], message: signed }) }])
    expect(bob.shown.map(m => m.body)).toEqual(['hello'])
  })

  it(`keeps at most ${MAX_PENDING_PER_GROUP} messages waiting per group`, async () => {
    const [alice, bob, carol] = await Promise.all([member(), member(), member()])
    const group = await alice.groups.create('g', [bob.id, carol.id])
    await deliver(alice, bob)
    await deliver(alice, carol)
    alice.sent.length = 0
    await alice.groups.change(group.id, { kind: 'add-admin', target: bob.id })
    await deliver(alice, bob)
    const waiting = await bob.groups.send(group.id, 'waits')
    const carrier = bob.sent.find(c => c.id === waiting.carriers.find(x => x.peer === carol.id)?.id) as NewOutbound
    for (let i = 0; i < MAX_PENDING_PER_GROUP + 10; i++) await deliver(bob, carol, [carrier])
    expect(carol.store.groups.pendingCount(group.id)).toBe(MAX_PENDING_PER_GROUP)
  })
})
