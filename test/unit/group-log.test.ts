import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { MAX_LOG_BYTES, MAX_MEMBERS, MAX_OPS } from '../../protocols/group/constants.js'
import { InvalidGroupPayloadError, Op, signOp, verifyOp } from '../../protocols/group/codec.js'
import { MembershipLog, OpRefusedError, replay } from '../../node/group/log.js'
import { changeOp, createOp } from '../../node/group/ops.js'
import type { VerifiedOp } from '../../protocols/group/codec.js'
import type { OpChange } from '../../node/group/ops.js'
import type { PrivateKey } from '@libp2p/interface'

interface Person { key: PrivateKey, id: string }

async function person (): Promise<Person> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

const NOW = 1_700_000_000_000
const nonce = (): Uint8Array<ArrayBuffer> => new Uint8Array(16).fill(7)

/** An op by `who` on top of `parents` (the log's heads by default). */
async function op (log: MembershipLog, who: Person, change: OpChange, parents?: string[]): Promise<VerifiedOp> {
  const lamportOf = (hash: string): number => log.all().find(o => o.hash === hash)?.lamport ?? 0
  const link = parents == null ? log.nextLink() : { parents, lamport: 1 + Math.max(...parents.map(lamportOf)) }
  return changeOp(who.key, log.id, link, change, NOW)
}

function refusal (fn: () => unknown): OpRefusedError['reason'] | undefined {
  try {
    fn()
  } catch (err) {
    if (err instanceof OpRefusedError) return err.reason
    throw err
  }
  return undefined
}

function snapshot (log: MembershipLog): unknown {
  const s = log.state
  return { name: s.name, members: [...s.members].sort(), admins: [...s.admins].sort(), heads: s.heads, lamport: s.lamport }
}

describe('group membership log', async () => {
  const [alice, bob, carol, dave, mallory] = await Promise.all([person(), person(), person(), person(), person()])

  it('a create makes its author the admin and names the members; its hash is the group ID', async () => {
    const create = await createOp(alice.key, 'trip', [bob.id, carol.id], nonce(), NOW)
    const log = new MembershipLog(create)
    expect(log.id).toBe(create.hash)
    expect(log.state.name).toBe('trip')
    expect([...log.state.members].sort()).toEqual([alice.id, bob.id, carol.id].sort())
    expect([...log.state.admins]).toEqual([alice.id])
    expect(log.state.heads).toEqual([create.hash])
  })

  it('an admin adds, removes, renames and appoints; a member leaves', async () => {
    const log = new MembershipLog(await createOp(alice.key, 'trip', [bob.id], nonce(), NOW))
    log.add(await op(log, alice, { kind: 'add', target: carol.id }))
    log.add(await op(log, alice, { kind: 'add-admin', target: bob.id }))
    log.add(await op(log, bob, { kind: 'rename', name: 'trip 2027' }))
    log.add(await op(log, bob, { kind: 'remove', target: carol.id }))
    log.add(await op(log, alice, { kind: 'add', target: dave.id }))
    log.add(await op(log, dave, { kind: 'leave' }))
    expect(log.state.name).toBe('trip 2027')
    expect([...log.state.members].sort()).toEqual([alice.id, bob.id].sort())
    expect([...log.state.admins].sort()).toEqual([alice.id, bob.id].sort())
    expect(log.size).toBe(7)
    expect(log.state.lamport).toBe(7)
  })

  it('refuses a non-admin\'s add, remove, rename and appointment, and a non-member\'s leave', async () => {
    const log = new MembershipLog(await createOp(alice.key, 'trip', [bob.id], nonce(), NOW))
    const forgeries: OpChange[] = [{ kind: 'add', target: mallory.id }, { kind: 'remove', target: alice.id }, { kind: 'rename', name: 'x' }, { kind: 'add-admin', target: bob.id }]
    for (const change of forgeries) {
      const forged = await op(log, bob, change)
      expect(refusal(() => log.add(forged))).toBe('not-allowed')
    }
    const strangerLeaves = await op(log, mallory, { kind: 'leave' })
    expect(refusal(() => log.add(strangerLeaves))).toBe('not-allowed')
    const adminRemovesItself = await op(log, alice, { kind: 'remove', target: alice.id })
    expect(refusal(() => log.add(adminRemovesItself))).toBe('not-allowed')
    expect(log.size).toBe(1)
  })

  it('refuses an op re-signed with another key than its author\'s (the signature does not verify)', async () => {
    const log = new MembershipLog(await createOp(alice.key, 'trip', [bob.id], nonce(), NOW))
    const genuine = await op(log, alice, { kind: 'add', target: mallory.id })
    const decoded = Op.decode(genuine.bytes)
    // names alice as the author, signed by mallory
    await expect(verifyOp(await signOp(mallory.key, decoded))).rejects.toThrow(InvalidGroupPayloadError)
    // alice's signature over other bytes
    const tampered = Op.encode({ ...decoded, add: peerIdFromPrivateKey(dave.key).toMultihash().bytes as Uint8Array<ArrayBuffer> })
    await expect(verifyOp({ op: tampered, signature: genuine.signature as Uint8Array<ArrayBuffer> })).rejects.toThrow(InvalidGroupPayloadError)
  })

  it('a replayed op is known and changes nothing', async () => {
    const log = new MembershipLog(await createOp(alice.key, 'trip', [bob.id], nonce(), NOW))
    const add = await op(log, alice, { kind: 'add', target: carol.id })
    expect(log.add(add)).toBe('added')
    const before = snapshot(log)
    expect(log.add(add)).toBe('known')
    expect(log.merge(log.all()).added).toEqual([])
    expect(snapshot(log)).toEqual(before)
  })

  it('refuses an op whose parents are unknown or whose Lamport time is not one more than its parents\'', async () => {
    const a = new MembershipLog(await createOp(alice.key, 'trip', [bob.id], nonce(), NOW))
    const first = await op(a, alice, { kind: 'add', target: carol.id })
    a.add(first)
    const second = await op(a, alice, { kind: 'add', target: dave.id })
    const b = new MembershipLog(a.all()[0])
    expect(refusal(() => b.add(second))).toBe('missing-parents')
    const skewed = await changeOp(alice.key, a.id, { parents: a.state.heads, lamport: 9 }, { kind: 'rename', name: 'x' }, NOW)
    expect(refusal(() => a.add(skewed))).toBe('bad-lamport')
    // the whole log in any order: parents are found in the batch
    const merged = b.merge([second, first])
    expect(merged.added.map(o => o.hash)).toEqual([first.hash, second.hash])
    expect(merged.refused).toEqual([])
  })

  it('refuses another group\'s ops', async () => {
    const one = new MembershipLog(await createOp(alice.key, 'one', [bob.id], nonce(), NOW))
    const two = new MembershipLog(await createOp(alice.key, 'two', [bob.id], new Uint8Array(16).fill(8), NOW))
    expect(one.id).not.toBe(two.id)
    const add = await op(two, alice, { kind: 'add', target: carol.id })
    expect(refusal(() => one.add(add))).toBe('wrong-group')
    expect(one.merge([two.all()[0]]).refused.map(r => r.error.reason)).toEqual(['wrong-group'])
  })

  it('merges concurrent adds and removes (a fork) to the same membership whatever the order they arrive in', async () => {
    const base = new MembershipLog(await createOp(alice.key, 'trip', [bob.id, carol.id], nonce(), NOW))
    base.add(await op(base, alice, { kind: 'add-admin', target: bob.id }))
    const heads = base.state.heads
    // alice and bob, offline from each other, each change the group
    const byAlice = await op(base, alice, { kind: 'add', target: dave.id }, heads)
    const byBob = await op(base, bob, { kind: 'remove', target: carol.id }, heads)
    const one = new MembershipLog(base.all()[0])
    one.merge([...base.all(), byAlice, byBob])
    const two = new MembershipLog(base.all()[0])
    two.merge([byBob, ...base.all().reverse()])
    two.merge([byAlice])
    expect(snapshot(one)).toEqual(snapshot(two))
    expect([...one.state.members].sort()).toEqual([alice.id, bob.id, dave.id].sort())
    expect(one.state.heads).toEqual([byAlice.hash, byBob.hash].sort())
    // the next op joins the fork
    const join = await op(one, alice, { kind: 'rename', name: 'joined' })
    expect(join.parents).toEqual(one.state.heads)
    one.add(join)
    expect(one.state.heads).toEqual([join.hash])
  })

  it('an admin removed concurrently with an op it signed: every member decides the same, by Lamport time then hash', async () => {
    const base = new MembershipLog(await createOp(alice.key, 'trip', [bob.id], nonce(), NOW))
    base.add(await op(base, alice, { kind: 'add-admin', target: bob.id }))
    const heads = base.state.heads
    const removeBob = await op(base, alice, { kind: 'remove', target: bob.id }, heads)
    const bobAdds = await op(base, bob, { kind: 'add', target: mallory.id }, heads)
    // each is allowed where it was made, so each goes in the log
    const one = new MembershipLog(base.all()[0])
    one.merge([...base.all(), removeBob, bobAdds])
    const two = new MembershipLog(base.all()[0])
    two.merge([...base.all(), bobAdds])
    two.merge([removeBob])
    expect(snapshot(one)).toEqual(snapshot(two))
    // same Lamport time: the lower hash is replayed first; bob's add stands only if it comes before his removal
    expect(removeBob.lamport).toBe(bobAdds.lamport)
    expect(one.state.members.has(mallory.id)).toBe(bobAdds.hash < removeBob.hash)
    expect(one.state.members.has(bob.id)).toBe(false)
    // once bob's removal is known, nothing bob signs on top of it is allowed
    const late = await op(one, bob, { kind: 'add', target: dave.id })
    expect(refusal(() => one.add(late))).toBe('not-allowed')
  })

  it('stateAt gives the membership a sender knew', async () => {
    const log = new MembershipLog(await createOp(alice.key, 'trip', [bob.id, carol.id], nonce(), NOW))
    const old = log.state.heads
    log.add(await op(log, alice, { kind: 'remove', target: carol.id }))
    expect(log.stateAt(old)?.members.has(carol.id)).toBe(true)
    expect(log.state.members.has(carol.id)).toBe(false)
    expect(log.stateAt(['00'.repeat(32)])).toBeUndefined()
  })

  it(`bounds: at most ${MAX_MEMBERS} members, ${MAX_OPS} ops or ${MAX_LOG_BYTES} bytes of log`, async () => {
    const people = await Promise.all(Array.from({ length: MAX_MEMBERS }, async () => person()))
    await expect(createOp(alice.key, 'big', people.map(p => p.id), nonce(), NOW)).rejects.toThrow(InvalidGroupPayloadError)
    const log = new MembershipLog(await createOp(alice.key, 'big', people.slice(0, MAX_MEMBERS - 1).map(p => p.id), nonce(), NOW))
    expect(log.state.members.size).toBe(MAX_MEMBERS)
    const oneMore = await op(log, alice, { kind: 'add', target: people[MAX_MEMBERS - 1].id })
    expect(refusal(() => log.add(oneMore))).toBe('not-allowed')
    let reason: string | undefined
    for (let i = 0; reason == null; i++) {
      const rename = await op(log, alice, { kind: 'rename', name: `name ${i}` })
      reason = refusal(() => log.add(rename))
      expect(log.size).toBeLessThanOrEqual(MAX_OPS)
    }
    expect(reason).toBe('log-full')
  })

  it('replay needs the create', () => {
    expect(() => replay([])).toThrow()
  })
})
