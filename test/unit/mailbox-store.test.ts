import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import type { PreparedStatements } from '../../common/statements.js'
import { MAILBOX_DB_FILE, MAILBOX_MIGRATIONS, MAILBOX_SCHEMA_VERSION, MAILBOX_SECRET_FILE, MailboxStore } from '../../relay/mailbox/store.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import { DatabaseSync } from 'node:sqlite'

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
    // a deposit's quota checks read one row each, whatever the mailbox holds
    const plan = (sql: string): string => db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((row: any) => String(row.detail)).join('; ')
    const quotas = ((store as any).statements as PreparedStatements).texts().filter(sql => /FROM (mailboxes|depositors) WHERE (owner|mailbox) = \?( AND depositor = \?)?$/.test(sql) && /^SELECT envelopes, bytes/.test(sql))
    expect(quotas.map(plan).sort()).toEqual(['SEARCH depositors USING PRIMARY KEY (mailbox=? AND depositor=?)', 'SEARCH mailboxes USING PRIMARY KEY (owner=?)'])
    // and so do the triggers that keep the totals, for each envelope added or removed
    const triggers = (db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger'").all() as Array<{ sql: string }>)
      .flatMap(({ sql }) => /BEGIN([\s\S]*)END$/.exec(sql)?.[1].split(';').map(body => body.trim()).filter(body => body !== '') ?? [])
      .map(body => body.replace(/\b(NEW|OLD)\.\w+/g, '?'))
    expect(triggers.length).toBe(5)
    for (const body of triggers) expect({ body, plan: plan(body) }).toEqual({ body, plan: expect.not.stringMatching(/SCAN|envelopes/) })
    // the totals counted once when the store opens are the only full reads
    const statements = ((store as any).statements as PreparedStatements).texts().filter(sql => !opening.has(sql))
    expect(statements.length).toBeGreaterThan(12)
    for (const sql of statements) {
      const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((row: any) => String(row.detail))
      expect({ sql, scans: plan.filter(step => /^SCAN (envelopes|mailboxes|e|m)\b/.test(step)) }).toEqual({ sql, scans: [] })
    }
    store.close()
  })

  /** Every mailbox's and depositor's usage as the store reports it, next to a count of the envelopes themselves. */
  function totals (store: MailboxStore): { kept: unknown[], counted: unknown[] } {
    const db = (store as any).db as DatabaseSync
    const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
    const kept: unknown[] = []
    for (const { owner } of db.prepare('SELECT owner FROM mailboxes ORDER BY owner').all() as Array<{ owner: Uint8Array }>) {
      kept.push([hex(owner), store.usage(owner)])
      for (const { depositor } of db.prepare('SELECT DISTINCT depositor FROM envelopes WHERE mailbox = ? ORDER BY depositor').all(owner) as Array<{ depositor: Uint8Array }>) {
        kept.push([hex(owner), hex(depositor), store.depositorUsage(owner, depositor)])
      }
    }
    const counted: unknown[] = []
    for (const { owner } of db.prepare('SELECT owner FROM mailboxes ORDER BY owner').all() as Array<{ owner: Uint8Array }>) {
      const all = db.prepare('SELECT COUNT(*) AS envelopes, COALESCE(SUM(size), 0) AS bytes FROM envelopes WHERE mailbox = ?').get(owner) as any
      counted.push([hex(owner), { envelopes: all.envelopes, bytes: all.bytes }])
      for (const row of db.prepare('SELECT depositor, COUNT(*) AS envelopes, SUM(size) AS bytes FROM envelopes WHERE mailbox = ? GROUP BY depositor ORDER BY depositor').all(owner) as any[]) {
        counted.push([hex(owner), hex(row.depositor), { envelopes: row.envelopes, bytes: row.bytes }])
      }
    }
    return { kept, counted }
  }

  it('keeps each mailbox\'s and each depositor\'s totals right through deposits, deletes, expiry and a restart', async () => {
    const dataDir = await tempDir()
    const clock = new FakeClock()
    const [bob, carol, alice, mallory] = await Promise.all([peer(), peer(), peer(), peer()])
    let store = await MailboxStore.open({ dataDir, clock })
    const now = clock.now()
    store.register(bob, now, now + 100_000)
    store.register(carol, now, now + 30_000)
    const ids: Uint8Array[] = []
    for (let i = 0; i < 20; i++) {
      const mailbox = i % 3 === 0 ? carol : bob
      const depositor = store.depositorTag(mailbox, i % 2 === 0 ? alice : mallory)
      ids.push(store.deposit({ mailbox, envelope: bytes('x'.repeat(i + 1)), storedAt: now, expiresAt: now + (i % 4 === 0 ? 10_000 : 200_000), depositor }).id)
    }
    // sizes 1 … 20; carol's are those of i = 0, 3, … 18
    expect(store.usage(bob)).toEqual({ envelopes: 13, bytes: 210 - 70 })
    let { kept, counted } = totals(store)
    expect(kept).toEqual(counted)
    // the owner fetched and acknowledged some (and named one of another mailbox, and one unknown)
    expect(store.delete(bob, [ids[1], ids[2], ids[4], ids[0], new Uint8Array(16)])).toBe(3)
    ;({ kept, counted } = totals(store))
    expect(kept).toEqual(counted)
    // a depositor with nothing left in a mailbox holds nothing there
    const bobs = store.list(bob, 0, 100, clock.now()).map(e => e.id)
    expect(store.delete(bob, bobs)).toBe(bobs.length)
    expect(store.usage(bob)).toEqual({ envelopes: 0, bytes: 0 })
    expect(store.depositorUsage(bob, store.depositorTag(bob, alice))).toEqual({ envelopes: 0, bytes: 0 })
    expect(((store as any).db as DatabaseSync).prepare('SELECT COUNT(*) AS n FROM depositors WHERE mailbox = ?').get(bob)).toEqual({ n: 0 })
    store.deposit({ mailbox: bob, envelope: bytes('late'), storedAt: now, expiresAt: now + 10_000, depositor: store.depositorTag(bob, alice) })
    store.deposit({ mailbox: bob, envelope: bytes('later'), storedAt: now, expiresAt: now + 200_000, depositor: store.depositorTag(bob, mallory) })
    store.close()

    // a restart reads the totals back
    store = await MailboxStore.open({ dataDir, clock })
    ;({ kept, counted } = totals(store))
    expect(kept).toEqual(counted)
    expect(store.usage(bob)).toEqual({ envelopes: 2, bytes: 9 })
    // expiry: envelopes first, then carol's mailbox with what it still held
    expect(store.sweep(now + 10_000).envelopes).toBeGreaterThan(0)
    ;({ kept, counted } = totals(store))
    expect(kept).toEqual(counted)
    expect(store.usage(bob)).toEqual({ envelopes: 1, bytes: 5 })
    expect(store.sweep(now + 30_000)).toEqual({ envelopes: 5, mailboxes: 1 })
    expect(store.usage(carol)).toEqual({ envelopes: 0, bytes: 0 })
    expect(((store as any).db as DatabaseSync).prepare('SELECT COUNT(*) AS n FROM depositors WHERE mailbox = ?').get(carol)).toEqual({ n: 0 })
    ;({ kept, counted } = totals(store))
    expect(kept).toEqual(counted)
    expect(store.held).toEqual({ mailboxes: 1, envelopes: 1, bytes: 5 })
    store.close()
  })

  it('counts what a mailbox database from before the totals (schema 1) holds when it opens it', async () => {
    const dataDir = await tempDir()
    const clock = new FakeClock()
    const [bob, alice] = await Promise.all([peer(), peer()])
    // a store as the previous release left it, written through its schema
    const old = new DatabaseSync(join(dataDir, MAILBOX_DB_FILE))
    old.exec(`BEGIN; ${MAILBOX_MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT`)
    old.prepare('INSERT INTO mailboxes (owner, registered_at, expires_at) VALUES (?, 0, ?)').run(bob, clock.now() + 100_000)
    const insert = old.prepare('INSERT INTO envelopes (id, mailbox, bytes, size, stored_at, expires_at, depositor) VALUES (?, ?, ?, ?, 0, ?, ?)')
    for (let i = 0; i < 5; i++) insert.run(new Uint8Array([i]), bob, bytes('x'.repeat(i)), i, clock.now() + 100_000, new Uint8Array([i % 2]))
    old.close()

    const store = await MailboxStore.open({ dataDir, clock })
    expect(((store as any).db as DatabaseSync).prepare('PRAGMA user_version').get()).toEqual({ user_version: MAILBOX_SCHEMA_VERSION })
    expect(store.usage(bob)).toEqual({ envelopes: 5, bytes: 10 })
    expect(store.depositorUsage(bob, new Uint8Array([0]))).toEqual({ envelopes: 3, bytes: 6 })
    expect(store.depositorUsage(bob, new Uint8Array([1]))).toEqual({ envelopes: 2, bytes: 4 })
    const tag = store.depositorTag(bob, alice)
    store.deposit({ mailbox: bob, envelope: bytes('yy'), storedAt: 0, expiresAt: clock.now() + 100_000, depositor: tag })
    expect(store.usage(bob)).toEqual({ envelopes: 6, bytes: 12 })
    expect(store.depositorUsage(bob, tag)).toEqual({ envelopes: 1, bytes: 2 })
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
