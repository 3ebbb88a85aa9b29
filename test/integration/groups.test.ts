// Group conversations with real nodes on loopback: membership through signed
// ops, messages fanned out through each member's outbox, shown once and never
// in a one-to-one history.
import { describe, expect, it } from 'vitest'
import { collect, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { GroupChange, GroupMessage, ParleyNode } from '../../index.js'

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

async function knows (node: ParleyNode, groupId: string, check: (members: string[]) => boolean = () => true): Promise<void> {
  await until(() => node.groups().some(g => g.id === groupId && check(g.members)), {
    on: [node, 'group:change'],
    what: () => `${node.peerId.toString()} to know group ${groupId} (${JSON.stringify(node.groups())})`
  })
}

describe('groups', () => {
  const net = useNetwork()

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
})
