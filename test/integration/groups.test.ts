// Group conversations with real nodes on loopback: membership through signed
// ops, messages fanned out through each member's outbox, shown once and never
// in a one-to-one history.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { Ack } from '../../protocols/im/index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { collect, reserved, useNetwork } from '../fixtures/network.js'
import { addOp, carrier, GROUP_IM, signedMessage, signedOp } from '../fixtures/raw-group.js'
import { useRawImClients } from '../fixtures/raw-im.js'
import { until } from '../fixtures/wait.js'
import type { GroupChange, GroupMessage, NodeConfig, ParleyNode, StatusChange } from '../../index.js'

/** Every group message the node shows from now on. */
function groupMessages (node: ParleyNode): GroupMessage[] {
  const got: GroupMessage[] = []
  node.addEventListener('group:message', evt => { got.push(evt.detail) })
  return got
}

/** Lets every node dial every other directly. */
async function introduce (nodes: ParleyNode[]): Promise<void> {
  for (const a of nodes) {
    for (const b of nodes) {
      if (a !== b) await a.libp2p.peerStore.merge(b.peerId, { multiaddrs: b.multiaddrs })
    }
  }
}

/** Resolves once every mailbox of the node has an open session. */
async function mailboxOpen (node: ParleyNode): Promise<void> {
  await until(() => node.status().mailboxes.length > 0 && node.status().mailboxes.every(m => m.connected), {
    on: [node, 'mailbox:change'],
    what: () => `the mailboxes of ${node.peerId.toString()} to open`
  })
}

async function knows (node: ParleyNode, groupId: string, check: (members: string[]) => boolean = () => true): Promise<void> {
  await until(() => node.groups().some(g => g.id === groupId && check(g.members)), {
    on: [node, 'group:change'],
    what: () => `${node.peerId.toString()} to know group ${groupId} (${JSON.stringify(node.groups())})`
  })
}

describe('groups', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()
  const rawClient = useRawImClients()

  it('a group of three: created, written to by each, shown once in order, in no one-to-one history', async () => {
    const [alice, bob, carol] = await Promise.all([net.node(), net.node(), net.node()])
    await introduce([alice, bob, carol])
    const changes: GroupChange[] = []
    bob.addEventListener('group:change', evt => { changes.push(evt.detail) })
    const atBob = groupMessages(bob)
    const atCarol = groupMessages(carol)
    const oneToOne = [collect(bob), collect(carol)]

    const group = await alice.createGroup('trip', [bob.peerId, carol.peerId.toString()])
    expect(group).toMatchObject({ name: 'trip', admins: [alice.peerId.toString()], member: true })
    expect(group.members).toEqual([alice, bob, carol].map(n => n.peerId.toString()).sort())
    await Promise.all([knows(bob, group.id), knows(carol, group.id)])
    expect(changes[0]).toMatchObject({ id: group.id, name: 'trip', ops: ['create'], member: true })

    const sent = await alice.sendGroup(group.id, 'hello all')
    expect(sent.recipients.map(r => r.status)).toEqual(['delivered', 'delivered'])
    await bob.sendGroup('trip', 'hi from bob')
    await until(() => atCarol.length === 2 && atBob.length === 1, { on: [[carol, 'group:message'], [bob, 'group:message']], what: 'the messages' })
    expect(atCarol.map(m => [m.from, m.seq, m.body])).toEqual([
      [alice.peerId.toString(), 1, 'hello all'],
      [bob.peerId.toString(), 1, 'hi from bob']
    ])
    expect(atBob[0]).toMatchObject({ groupId: group.id, id: sent.id, from: alice.peerId.toString(), body: 'hello all', path: 'direct' })
    // display order: Lamport time; bob had seen alice's message
    expect(carol.groupHistory(group.id).map(m => m.body)).toEqual(['hello all', 'hi from bob'])
    await until(() => alice.groupHistory('trip').length === 2, { on: [alice, 'group:message'], what: 'alice to get bob\'s' })
    expect(alice.groupHistory('trip').map(m => m.body)).toEqual(['hello all', 'hi from bob'])
    // carriers are not one-to-one messages
    expect(oneToOne.flat()).toEqual([])
    expect(bob.history(alice.peerId)).toEqual([])
    expect(alice.history(bob.peerId)).toEqual([])
    expect(bob.conversations()).toEqual([])
    expect(bob.requests()).toEqual([])
    // and one-to-one messages still go, after the carriers' seqs
    await alice.send(bob.peerId, 'just to you')
    await until(() => bob.history(alice.peerId).length === 1, { on: [bob, 'message'], what: 'the one-to-one message' })
  })

  it('a removed member is told, and gets nothing written after', async () => {
    const [alice, bob, carol] = await Promise.all([net.node(), net.node(), net.node()])
    await introduce([alice, bob, carol])
    const group = await alice.createGroup('team', [bob.peerId, carol.peerId])
    await Promise.all([knows(bob, group.id), knows(carol, group.id)])
    const atCarol = groupMessages(carol)
    await alice.removeMember(group.id, carol.peerId)
    await knows(carol, group.id, members => !members.includes(carol.peerId.toString()))
    expect(carol.group(group.id).member).toBe(false)
    const sent = await alice.sendGroup(group.id, 'after carol left')
    expect(sent.recipients.map(r => r.peer)).toEqual([bob.peerId.toString()])
    await until(() => bob.groupHistory(group.id).length === 1, { on: [bob, 'group:message'], what: 'bob to get it' })
    expect(atCarol).toEqual([])
    await expect(carol.sendGroup(group.id, 'still here?')).rejects.toThrow(/no longer a member/)
    // only an admin changes the membership
    await expect(bob.addMember(group.id, carol.peerId)).rejects.toThrow(/not allowed/)
  })

  it('a member written from the spec is read; forged ops (non-admin signer, wrong key) and messages (bad signature, another sender) are refused and never shown', async () => {
    const [alice, bob] = await Promise.all([net.node(), net.node()])
    const malloryKey = await generateKeyPair('Ed25519')
    const mallory = await rawClient({ privateKey: malloryKey })
    const malloryId = peerIdFromPrivateKey(malloryKey)
    const eve = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    await introduce([alice, bob])
    const group = await alice.createGroup('club', [bob.peerId, malloryId])
    await knows(bob, group.id)
    const atBob = groupMessages(bob)
    const changes: GroupChange[] = []
    bob.addEventListener('group:change', evt => { changes.push(evt.detail) })
    const groupId = Uint8Array.from(Buffer.from(group.id, 'hex'))
    const heads = [groupId]

    const stream = await mallory.open(bob.multiaddrs, GROUP_IM)
    const acks = await stream.send([
      // a member who is no admin adds someone
      carrier(1, { ops: [await signedOp(malloryKey, addOp(groupId, malloryId, eve, heads, 2))] }),
      // the same op in alice's name, signed with mallory's key
      carrier(2, { ops: [await signedOp(malloryKey, addOp(groupId, alice.peerId, eve, heads, 2))] }),
      // a message whose signature is not the sender's
      carrier(3, { message: await signedMessage(malloryKey, { group: groupId, sender: malloryId, seq: 1, lamport: 2, heads, body: 'forged signature' }, new Uint8Array(64).fill(1)) }),
      // a message in alice's name
      carrier(4, { message: await signedMessage(malloryKey, { group: groupId, sender: alice.peerId, seq: 1, lamport: 2, heads, body: 'forged sender' }) }),
      // and a genuine one
      carrier(5, { message: await signedMessage(malloryKey, { group: groupId, sender: malloryId, seq: 1, lamport: 2, heads, body: 'hello from a foreign client' }) })
    ])
    // carriers are acknowledged once stored: what they hold is judged after
    expect(acks.map(a => a.status)).toEqual(Array(5).fill(Ack.Status.OK))
    await until(() => atBob.length === 1, { on: [bob, 'group:message'], what: 'bob to show the genuine message' })
    expect(atBob[0]).toMatchObject({ from: malloryId.toString(), seq: 1, body: 'hello from a foreign client', groupId: group.id })
    expect(bob.groupHistory(group.id).map(m => m.body)).toEqual(['hello from a foreign client'])
    expect(bob.group(group.id).members).not.toContain(eve.toString())
    expect(bob.group(group.id).members).toHaveLength(3)
    expect(changes).toEqual([])
    expect(bob.history(malloryId)).toEqual([])

    // on /im/1.0.0 a carrier is INVALID
    const old = await mallory.open(bob.multiaddrs)
    const [refused] = await old.send([carrier(6, { message: await signedMessage(malloryKey, { group: groupId, sender: malloryId, seq: 2, lamport: 3, heads, body: 'on 1.0.0' }) })])
    expect(refused.status).toBe(Ack.Status.INVALID)
  })

  it('a member offline during a removal, writing before it hears of it, is answered with the log and writes no more to the removed member', async () => {
    const bobDir = await tempDir()
    const [alice, carol, dave] = await Promise.all([net.node(), net.node(), net.node()])
    let bob = await net.node({ dataDir: bobDir })
    await introduce([alice, bob, carol, dave])
    const group = await alice.createGroup('club', [bob.peerId, carol.peerId, dave.peerId])
    await Promise.all([knows(bob, group.id), knows(carol, group.id), knows(dave, group.id)])
    await bob.stop()
    await alice.removeMember(group.id, dave.peerId)
    await Promise.all([carol, dave].map(async n => { await knows(n, group.id, members => members.length === 3) }))
    // alice goes away before bob is back: bob cannot hear of the removal from her
    await alice.stop()
    bob = await net.node({ dataDir: bobDir })
    await introduce([bob, carol, dave])
    const atDave = groupMessages(dave)
    const first = await bob.sendGroup(group.id, 'written under the old membership')
    expect(first.recipients.map(r => r.peer).sort()).toEqual([alice, carol, dave].map(n => n.peerId.toString()).sort())
    // carol answers with the log she holds
    await knows(bob, group.id, members => !members.includes(dave.peerId.toString()))
    const second = await bob.sendGroup(group.id, 'written knowing of it', { timeout: 5_000 })
    expect(second.recipients.map(r => r.peer).sort()).toEqual([alice, carol].map(n => n.peerId.toString()).sort())
    await until(() => carol.groupHistory(group.id).length === 2, { on: [carol, 'group:message'], what: 'carol to get both' })
    // dave knew he was removed: neither is shown to him
    expect(atDave).toEqual([])
  })

  it('a member offline during a removal learns of it from its mailbox before it next writes: nothing goes to the removed member', async () => {
    const relay = await net.relay({ dataDir: await tempDir() })
    const config = (dataDir: string): NodeConfig => ({ dataDir, relays: [relay.multiaddrs[0].toString()], mailboxAfter: 500, retry: { initialDelay: 200, maxDelay: 2_000 } })
    const bobDir = await tempDir()
    const [alice, dave] = await Promise.all([net.node(config(await tempDir())), net.node(config(await tempDir()))])
    let bob = await net.node(config(bobDir))
    await Promise.all([alice, bob, dave].map(async n => { await reserved(n); await mailboxOpen(n) }))
    await introduce([alice, bob, dave])
    const group = await alice.createGroup('club', [bob.peerId, dave.peerId])
    await Promise.all([knows(bob, group.id), knows(dave, group.id)])
    // bob's mailbox, where the removal will wait for him
    await until(async () => (await alice.mailboxOf(bob.peerId)) != null, { what: 'bob\'s mailbox record', every: 200 })
    await bob.stop()

    const bobId = bob.peerId.toString()
    // a carrier's status is the outbox's own (the node shows none: a carrier is no one-to-one message)
    const engine = (alice as any).engine as EventTarget
    const stored: StatusChange[] = []
    engine.addEventListener('message:status', (evt: any) => { if (evt.detail.status === 'stored' && evt.detail.peer === bobId) stored.push(evt.detail) })
    await alice.removeMember(group.id, dave.peerId)
    await until(() => stored.length > 0, { on: [engine, 'message:status'], what: 'the removal to wait in bob\'s mailbox' })
    // alice goes too: bob can hear of the removal from his mailbox alone
    await alice.stop()

    bob = await net.node(config(bobDir))
    // written at once, as a user would the moment the node is back
    const sent = await bob.queueGroup(group.id, 'first words back')
    expect(sent.carriers.map(c => c.peer)).toEqual([alice.peerId.toString()])
    expect(bob.group(group.id).members).not.toContain(dave.peerId.toString())
  })

  it('a group makes its members trusted only when this node or a contact stands behind it, never a stranger\'s group', async () => {
    const [stranger, bob, carol] = await Promise.all([net.node(), net.node(), net.node()])
    await introduce([stranger, bob, carol])
    // a stranger puts bob in a group with carol (who could be another identity of the stranger's)
    const group = await stranger.createGroup('spam', [bob.peerId, carol.peerId])
    await knows(bob, group.id)
    await carol.send(bob.peerId, 'one')
    await until(() => bob.requests().some(r => r.peerId === carol.peerId.toString()), { on: [bob, 'message'], what: 'carol\'s message as a request' })
    expect(bob.requests().find(r => r.peerId === carol.peerId.toString())?.messages).toBe(1)

    // once the group's creator is bob's contact, its members are trusted: no more requests from carol
    await bob.addContact('creator', stranger.peerId.toString())
    const shown = collect(bob)
    await carol.send(bob.peerId, 'two')
    await until(() => shown.some(m => m.body === 'two'), { on: [bob, 'message'], what: 'carol\'s second message' })
    expect(shown.find(m => m.body === 'two')?.request).toBeUndefined()
    expect(bob.requests().find(r => r.peerId === carol.peerId.toString())?.messages).toBe(1)
  })
})
