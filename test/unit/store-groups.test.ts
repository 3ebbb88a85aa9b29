import { describe, expect, it } from 'vitest'
import type { PreparedStatements } from '../../common/statements.js'
import { Store } from '../../node/store/index.js'
import type { DatabaseSync } from 'node:sqlite'

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const GROUP = 'ab'.repeat(32)
const id = (n: number): string => `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`

describe('Store, groups', () => {
  it('a carrier takes its conversation\'s seq, in both directions, but no place in its history, preview, unread count or requests', () => {
    const store = new Store()
    const carrier = new Uint8Array([1, 2, 3])
    // out: a carrier between two one-to-one messages
    store.enqueue({ peer: PEER, id: id(1), body: 'before', contentType: 'text/plain', sentAt: 1 })
    const out = store.enqueue({ peer: PEER, id: id(2), body: '', contentType: 'text/plain', sentAt: 2, group: carrier })
    store.enqueue({ peer: PEER, id: id(3), body: 'after', contentType: 'text/plain', sentAt: 3 })
    expect(out.seq).toBe(2)
    expect(store.due(PEER, 10).map(e => [e.seq, e.group])).toEqual([[1, undefined], [2, carrier], [3, undefined]])
    // in: a carrier from a stranger, and one held behind a missing seq
    const inbound = (seq: number, group?: Uint8Array): ReturnType<Store['receive']> => store.receive({ peer: PEER, id: id(10 + seq), seq, body: group == null ? `in ${seq}` : '', contentType: 'text/plain', sentAt: seq, receivedAt: 100 + seq, path: 'direct', request: true, ...(group == null ? {} : { group }) })
    expect(inbound(1, carrier).presented.map(m => [m.seq, m.group])).toEqual([[1, carrier]])
    inbound(3, carrier)
    expect(inbound(2).presented.map(m => m.seq)).toEqual([2, 3])
    expect(store.history(PEER).map(m => m.body)).toEqual(['before', 'after', 'in 2'])
    expect(store.requests()).toEqual([expect.objectContaining({ messages: 1 })])
    expect(store.conversations()[0].last.body).toBe('in 2')
    expect(store.markRead(PEER)).toBe(0)
  })

  it('keeps a group message once per (group, sender, seq), and lists them in display order on an index', () => {
    const store = new Store()
    const { groups } = store
    expect(groups.addGroup(GROUP, 1)).toBe(true)
    expect(groups.addGroup(GROUP, 2)).toBe(false)
    const message = (sender: string, seq: number, lamport: number): Parameters<typeof groups.addMessage>[0] => ({ group: GROUP, sender, seq, id: String(seq), lamport, body: `${sender} ${seq}`, contentType: 'text/plain', sentAt: 1, receivedAt: 2 })
    expect(groups.addMessage(message('b', 1, 3))).toBe(true)
    expect(groups.addMessage(message('a', 1, 3))).toBe(true)
    expect(groups.addMessage(message('a', 2, 1))).toBe(true)
    expect(groups.addMessage(message('a', 2, 9))).toBe(false)
    expect(groups.messages(GROUP).map(m => m.body)).toEqual(['a 2', 'a 1', 'b 1'])
    expect(groups.messages(GROUP, { limit: 2 }).map(m => m.body)).toEqual(['a 1', 'b 1'])
    expect(groups.messages(GROUP, { before: 3 }).map(m => m.body)).toEqual(['a 2'])
    expect(groups.takeSeq(GROUP)).toBe(1)
    expect(groups.takeSeq(GROUP)).toBe(2)
    expect(groups.witness(GROUP, 7)).toBe(7)
    expect(groups.witness(GROUP, 3)).toBe(7)

    // what a group's history and its waiting payloads are read with: on indexes
    groups.pending(GROUP)
    const db = (store as any).db as DatabaseSync
    const statements = ((groups as any).statements as PreparedStatements).texts().filter(sql => /FROM group_messages WHERE|FROM group_pending WHERE/.test(sql))
    expect(statements).toHaveLength(2)
    for (const sql of statements) {
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map(r => r.detail)
      expect(plan.filter(step => /^SCAN /.test(step)), `${sql}\n${plan.join('\n')}`).toEqual([])
    }
  })
})
