import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import type { PreparedStatements } from '../../common/statements.js'
import { MAILBOX_DB_FILE, MAILBOX_SECRET_FILE, MailboxStore } from '../../relay/mailbox/store.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { DatabaseSync } from 'node:sqlite'

async function peer (): Promise<Uint8Array> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toMultihash().bytes
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

describe('mailbox store', () => {
  const tempDir = useTempDirs()

  it('keeps mailboxes and envelopes, oldest first, across a reopen of the same data dir', async () => {
    const dataDir = await tempDir()
    const clock = new FakeClock()
    const owner = await peer()
    const depositor = await peer()
    const store = await MailboxStore.open({ dataDir, clock })
    expect(store.register(owner, clock.now(), clock.now() + 1000)).toEqual({ created: true })
    const tag = store.depositorTag(owner, depositor)
    const a = store.deposit({ mailbox: owner, envelope: bytes('a'), storedAt: clock.now(), expiresAt: clock.now() + 500, depositor: tag })
    const b = store.deposit({ mailbox: owner, envelope: bytes('bb'), storedAt: clock.now(), expiresAt: clock.now() + 500, depositor: tag })
    store.close()

    const reopened = await MailboxStore.open({ dataDir, clock })
    expect(reopened.held).toEqual({ mailboxes: 1, envelopes: 2, bytes: 3 })
    // the same secret: the same tag for the same depositor
    expect(reopened.depositorTag(owner, depositor)).toEqual(tag)
    expect(reopened.usage(owner)).toEqual({ envelopes: 2, bytes: 3 })
    expect(reopened.depositorUsage(owner, tag)).toEqual({ envelopes: 2, bytes: 3 })
    expect(reopened.list(owner, 0, 10, clock.now()).map(e => [e.id, new TextDecoder().decode(e.envelope)])).toEqual([[a.id, 'a'], [b.id, 'bb']])
    expect(reopened.list(owner, a.seq, 10, clock.now()).map(e => e.id)).toEqual([b.id])
    reopened.close()

    expect((await stat(join(dataDir, MAILBOX_SECRET_FILE))).mode & 0o777).toBe(0o600)
    expect((await stat(join(dataDir, MAILBOX_DB_FILE))).mode & 0o777).toBe(0o600)
  })

  it('tags depositors with a keyed hash per mailbox: the same peer the same tag in one mailbox, unrelated tags in two mailboxes or on two hosts', async () => {
    const clock = new FakeClock()
    const depositor = await peer()
    const bob = await peer()
    const carol = await peer()
    const one = await MailboxStore.open({ clock })
    const two = await MailboxStore.open({ clock })
    expect(one.depositorTag(bob, depositor)).toEqual(one.depositorTag(bob, depositor))
    expect(one.depositorTag(bob, depositor)).not.toEqual(one.depositorTag(carol, depositor))
    expect(one.depositorTag(bob, depositor)).not.toEqual(two.depositorTag(bob, depositor))
    expect(one.depositorTag(bob, depositor)).not.toEqual(one.depositorTag(bob, await peer()))
    one.close()
    two.close()
  })

  it('deletes only the owner\'s envelopes, and renews a lease without shortening it', async () => {
    const clock = new FakeClock()
    const bob = await peer()
    const mallory = await peer()
    const store = await MailboxStore.open({ clock })
    store.register(bob, clock.now(), clock.now() + 10_000)
    store.register(mallory, clock.now(), clock.now() + 10_000)
    const { id } = store.deposit({ mailbox: bob, envelope: bytes('x'), storedAt: clock.now(), expiresAt: clock.now() + 5000, depositor: store.depositorTag(bob, mallory) })
    expect(store.delete(mallory, [id])).toBe(0)
    expect(store.usage(bob).envelopes).toBe(1)
    expect(store.delete(bob, [id, new Uint8Array(16)])).toBe(1)
    expect(store.held).toEqual({ mailboxes: 2, envelopes: 0, bytes: 0 })

    expect(store.register(bob, clock.now(), clock.now() + 5_000)).toEqual({ created: false })
    expect(store.mailbox(bob, clock.now())?.expiresAt).toBe(clock.now() + 10_000)
    store.close()
  })

  it('sweeps expired envelopes and expired mailboxes (with what they held) on its timer', async () => {
    const clock = new FakeClock()
    const bob = await peer()
    const carol = await peer()
    const tag = new Uint8Array(32)
    const store = await MailboxStore.open({ clock })
    const now = clock.now()
    store.register(bob, now, now + 100_000)
    store.register(carol, now, now + 30_000)
    store.deposit({ mailbox: bob, envelope: bytes('short'), storedAt: now, expiresAt: now + 10_000, depositor: tag })
    store.deposit({ mailbox: bob, envelope: bytes('long'), storedAt: now, expiresAt: now + 200_000, depositor: tag })
    store.deposit({ mailbox: carol, envelope: bytes('orphan'), storedAt: now, expiresAt: now + 200_000, depositor: tag })

    const swept: Array<{ envelopes: number, mailboxes: number }> = []
    store.startSweeping(10_000, s => { swept.push(s) })
    // expired but not yet swept: no longer listed
    clock.advance(9_999)
    expect(swept).toEqual([])
    clock.advance(1)
    expect(swept).toEqual([{ envelopes: 1, mailboxes: 0 }])
    expect(store.list(bob, 0, 10, clock.now()).map(e => new TextDecoder().decode(e.envelope))).toEqual(['long'])
    clock.advance(20_000)
    expect(swept.at(-1)).toEqual({ envelopes: 1, mailboxes: 1 })
    expect(store.mailbox(carol, clock.now())).toBeUndefined()
    expect(store.held).toEqual({ mailboxes: 1, envelopes: 1, bytes: 4 })
    store.close()
    expect(clock.pending).toBe(0)
  })

  it('plans every query on an index: none scans the envelopes or the mailboxes, however many there are', async () => {
    const clock = new FakeClock()
    const owner = await peer()
    const store = await MailboxStore.open({ clock })
    const opening = new Set((store as any).statements.texts())
    const tag = store.depositorTag(owner, await peer())
    store.register(owner, clock.now(), clock.now() + 1000)
    store.register(owner, clock.now(), clock.now() + 2000)
    store.mailbox(owner, clock.now())
    const { id } = store.deposit({ mailbox: owner, envelope: bytes('x'), storedAt: clock.now(), expiresAt: clock.now() + 10, depositor: tag })
    store.usage(owner)
    store.depositorUsage(owner, tag)
    store.list(owner, 0, 10, clock.now())
    store.delete(owner, [id])
    store.sweep(clock.now())
    // and a sweep with something to delete
    store.deposit({ mailbox: owner, envelope: bytes('y'), storedAt: clock.now(), expiresAt: clock.now() + 10, depositor: tag })
    expect(store.sweep(clock.now() + 100)).toEqual({ envelopes: 1, mailboxes: 0 })
    const db = (store as any).db as DatabaseSync
    // the totals counted once when the store opens are the only full reads
    const statements = ((store as any).statements as PreparedStatements).texts().filter(sql => !opening.has(sql))
    expect(statements.length).toBeGreaterThan(12)
    for (const sql of statements) {
      const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((row: any) => String(row.detail))
      expect({ sql, scans: plan.filter(step => /^SCAN (envelopes|mailboxes|e|m)\b/.test(step)) }).toEqual({ sql, scans: [] })
    }
    store.close()
  })

  it('refuses to open a database that is not one, or a secret of the wrong size, saying which file', async () => {
    const clock = new FakeClock()
    const garbage = await tempDir()
    await writeFile(join(garbage, MAILBOX_DB_FILE), 'not a database, just text long enough to have a header'.repeat(20))
    await expect(MailboxStore.open({ dataDir: garbage, clock })).rejects.toMatchObject({ name: 'MailboxStoreError', message: expect.stringContaining(MAILBOX_DB_FILE) })

    const shortSecret = await tempDir()
    await writeFile(join(shortSecret, MAILBOX_SECRET_FILE), new Uint8Array(5))
    await expect(MailboxStore.open({ dataDir: shortSecret, clock })).rejects.toMatchObject({ name: 'MailboxStoreError', message: expect.stringContaining(MAILBOX_SECRET_FILE) })
  })
})
