// The node's side of mailboxes with stubs for the protocol client, the
// envelope and the reception: what the directory keeps, what the depositor
// leaves where, and what the receiver stores, deletes and answers.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { MailboxDepositor } from '../../node/mailbox/depositor.js'
import { MailboxDirectory } from '../../node/mailbox/directory.js'
import { ackStatusNumber, ackStatusOf, MailboxReceiver } from '../../node/mailbox/receiver.js'
import { idToString } from '../../node/message-id.js'
import { Store } from '../../node/store/index.js'
import { Ack, ChatMessage } from '../../protocols/im/index.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import { until } from '../fixtures/wait.js'
import type { MailboxContent, MailboxHost } from '../../node/mailbox/depositor.js'
import type { VerifiedRecord } from '../../node/mailbox/directory.js'
import type { MailboxFill, OpenedMail, ReceiveSession, SessionEnvelope } from '../../node/mailbox/receiver.js'
import type { OutboxEntry } from '../../node/store/index.js'
import type { InboundMessage, StoreResult } from '../../protocols/im/index.js'
import type { PeerId } from '@libp2p/interface'

async function newPeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

const DAY = 86_400_000

function record (peer: PeerId, hosts: MailboxHost[], seq = 1, expiresAt = Number.MAX_SAFE_INTEGER): VerifiedRecord {
  return { peer: peer.toString(), seq, keys: [{ publicKey: new Uint8Array(32).fill(seq), expiresAt }], hosts, bytes: new TextEncoder().encode(`record ${seq}`) }
}

/** A verify stub: the bytes name the record (as `records` holds them). */
function verifier (records: Map<string, VerifiedRecord>) {
  return async (bytes: Uint8Array): Promise<VerifiedRecord> => {
    const found = records.get(new TextDecoder().decode(bytes))
    if (found == null) throw new Error('does not verify')
    return found
  }
}

describe('MailboxDirectory', () => {
  it('keeps the newest verified record, uses it from the store after a restart, and refreshes it from the DHT once old', async () => {
    const clock = new FakeClock()
    const store = new Store()
    const bob = await newPeer()
    const r1 = record(bob, [])
    const r2 = record(bob, [], 2)
    const records = new Map([['record 1', r1], ['record 2', r2]])
    const dht: { value?: Uint8Array } = {}
    let lookups = 0
    const directory = new MailboxDirectory({ store, clock, verify: verifier(records), lookup: async () => { lookups++; return dht.value } }, { refreshAfter: 1_000 })
    expect(await directory.get(bob.toString())).toBeUndefined()
    expect(lookups).toBe(1)

    await directory.learn(bob.toString(), r2.bytes)
    // an older one does not replace it
    await directory.learn(bob.toString(), r1.bytes)
    expect((await directory.get(bob.toString()))?.seq).toBe(2)
    await expect(directory.learn(bob.toString(), new TextEncoder().encode('forged'))).rejects.toThrow('does not verify')

    // a new directory over the same store (a restart) has it without the DHT
    const again = new MailboxDirectory({ store, clock, verify: verifier(records), lookup: async () => { lookups++; return dht.value } }, { refreshAfter: 1_000 })
    lookups = 0
    expect((await again.get(bob.toString()))?.seq).toBe(2)
    expect(lookups).toBe(0)
    clock.advance(1_000)
    const r3 = record(bob, [], 3)
    records.set('record 3', r3)
    dht.value = r3.bytes
    expect((await again.get(bob.toString()))?.seq).toBe(3)
    expect(lookups).toBe(1)
    store.close()
  })

  it('gives no record whose keys have all expired', async () => {
    const clock = new FakeClock()
    const store = new Store()
    const bob = await newPeer()
    const old = record(bob, [], 1, clock.now() + 10)
    const directory = new MailboxDirectory({ store, clock, verify: verifier(new Map([['record 1', old]])) })
    await directory.learn(bob.toString(), old.bytes)
    expect(await directory.get(bob.toString())).toBeDefined()
    clock.advance(10)
    expect(await directory.get(bob.toString())).toBeUndefined()
    store.close()
  })
})

describe('MailboxDepositor', () => {
  async function setup (hostCount: number, reads?: string[]) {
    const bob = await newPeer()
    const hosts = await Promise.all(Array.from({ length: hostCount }, async (_, i) => ({ peerId: await newPeer(), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${4000 + i}`)] })))
    const deposits: Array<{ host: string, mailbox: string, envelope: string, ttlMs?: number }> = []
    const refusing = new Set<string>()
    const sealed: Array<{ recipient: string, key: Uint8Array, content: MailboxContent }> = []
    const depositor = new MailboxDepositor({
      directory: { get: async (peer) => peer === bob.toString() ? { ...record(bob, hosts), ...(reads == null ? {} : { reads }) } : undefined },
      transport: {
        depositMany: async (host, mailbox, envelopes) => envelopes.map(({ envelope, ttlMs }) => {
          if (refusing.has(host.peerId.toString())) return new Error('QUOTA_EXCEEDED')
          deposits.push({ host: host.peerId.toString(), mailbox: mailbox.toString(), envelope: new TextDecoder().decode(envelope), ttlMs })
          return { expiresAt: 1_000 + deposits.length }
        })
      },
      seal: async (recipient, key, content) => {
        sealed.push({ recipient: recipient.toString(), key, content })
        return new TextEncoder().encode(`sealed ${sealed.length}`)
      },
      peerId: peerIdFromString,
      logger: defaultLogger()
    })
    const entries = [1, 2, 3].map(seq => ({ id: idToString(new Uint8Array(16).fill(seq)), peer: bob.toString(), seq, body: `m${seq}`, contentType: 'text/plain', sentAt: seq }) as OutboxEntry)
    return { bob, hosts, deposits, refusing, sealed, depositor, entries }
  }

  it('leaves a group carrier only for a recipient whose record reads /im/1.1.0', async () => {
    const t = await setup(1)
    const carrier = { ...t.entries[1], body: '', group: new Uint8Array([1, 2, 3]) }
    const entries = [t.entries[0], carrier, t.entries[2]]
    // the record says nothing of /im/1.1.0: the carrier waits for a stream
    const stored = await t.depositor.deposit(t.bob.toString(), entries)
    expect(stored.map(s => s.id)).toEqual([t.entries[0].id, t.entries[2].id])
    expect(t.sealed.map(s => 'message' in s.content && ChatMessage.decode(s.content.message).group)).toEqual([undefined, undefined])

    const reader = await setup(1, ['/im/1.1.0'])
    const all = await reader.depositor.deposit(reader.bob.toString(), [reader.entries[0], { ...reader.entries[1], body: '', group: new Uint8Array([1, 2, 3]) }])
    expect(all).toHaveLength(2)
    expect(reader.sealed.map(s => 'message' in s.content && ChatMessage.decode(s.content.message).group)).toEqual([undefined, new Uint8Array([1, 2, 3])])
  })

  it('seals each message once to the newest key and leaves it on every host (up to 3), in seq order', async () => {
    const t = await setup(4)
    const stored = await t.depositor.deposit(t.bob.toString(), t.entries)
    expect(stored.map(s => s.id)).toEqual(t.entries.map(e => e.id))
    expect(t.sealed).toHaveLength(3)
    expect(t.sealed.every(s => s.recipient === t.bob.toString() && s.key[0] === 1)).toBe(true)
    const first = t.sealed[0].content as { message: Uint8Array }
    expect(ChatMessage.decode(first.message)).toMatchObject({ seq: 1n, body: 'm1' })
    expect(new Set(t.deposits.map(d => d.host)).size).toBe(3)
    for (const host of t.hosts.slice(0, 3)) {
      expect(t.deposits.filter(d => d.host === host.peerId.toString()).map(d => d.envelope)).toEqual(['sealed 1', 'sealed 2', 'sealed 3'])
    }
    expect(t.deposits.every(d => d.mailbox === t.bob.toString())).toBe(true)
    // until the latest host expiry of each
    expect(stored.every(s => s.until > 1_000)).toBe(true)
  })

  it('asks the host to keep each message no longer than until it expires for the sender', async () => {
    const t = await setup(1)
    const now = Date.now()
    await t.depositor.deposit(t.bob.toString(), t.entries, { expiresAt: entry => now + 60_000 * entry.seq })
    const ttls = t.deposits.map(d => d.ttlMs ?? 0)
    expect(ttls).toHaveLength(3)
    ttls.forEach((ttl, i) => {
      expect(ttl).toBeLessThanOrEqual(60_000 * (i + 1))
      expect(ttl).toBeGreaterThan(60_000 * (i + 1) - 5_000)
    })
  })

  it('stores a message when one host takes it, and throws when none does or the recipient has no record', async () => {
    const t = await setup(2)
    t.refusing.add(t.hosts[0].peerId.toString())
    expect(await t.depositor.deposit(t.bob.toString(), t.entries)).toHaveLength(3)
    t.refusing.add(t.hosts[1].peerId.toString())
    await expect(t.depositor.deposit(t.bob.toString(), t.entries)).rejects.toThrow(/no mailbox host .* took the messages .*QUOTA_EXCEEDED/)
    const carol = await newPeer()
    await expect(t.depositor.deposit(carol.toString(), t.entries)).rejects.toThrow('has no mailbox that this node knows of')
  })
})

/** A session the test feeds: batches pushed, deletions recorded. */
class StubSession implements ReceiveSession {
  readonly deleted: string[] = []
  readonly events = new EventTarget()
  private readonly queue: SessionEnvelope[][] = []
  private wake?: () => void
  private closed = false
  constructor (readonly info: MailboxFill) {}

  push (batch: SessionEnvelope[]): void {
    this.queue.push(batch)
    this.wake?.()
  }

  async delete (ids: Uint8Array[]): Promise<void> {
    this.deleted.push(...ids.map(id => new TextDecoder().decode(id)))
    this.events.dispatchEvent(new Event('delete'))
  }

  async close (): Promise<void> {
    this.closed = true
    this.wake?.()
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<SessionEnvelope[]> {
    while (!this.closed) {
      const batch = this.queue.shift()
      if (batch != null) {
        yield batch
        continue
      }
      await new Promise<void>(resolve => { this.wake = resolve })
    }
  }
}

describe('MailboxReceiver', () => {
  async function setup () {
    const me = await newPeer()
    const alice = await newPeer()
    const host = { peerId: await newPeer(), addrs: [] }
    const session = new StubSession({ envelopes: 3, bytes: 300, maxEnvelopes: 1000, maxBytes: 16 << 20, expiresAt: 30 * DAY })
    const opened = new Map<string, OpenedMail | Error>()
    const stored: InboundMessage[] = []
    const receipts: Array<{ peer: string, answers: Array<{ id: Uint8Array, status: number }> }> = []
    const engineReceipts: Array<{ peer: string, answers: Array<{ id: string, status: Ack.Status }> }> = []
    const learned: string[] = []
    let storeResult: StoreResult | Error = 'stored'
    let admission: 'accept' | 'block' | 'rate-limit' = 'accept'
    let trusted = true
    const events = new EventTarget()
    const receiver = new MailboxReceiver({
      transport: {
        register: async () => session.info,
        open: async () => session
      },
      open: async (envelope) => {
        const found = opened.get(new TextDecoder().decode(envelope))
        if (found == null || found instanceof Error) throw found ?? new Error('unknown envelope')
        return found
      },
      reception: {
        admit: () => admission === 'rate-limit' ? { status: 'rate-limit', retryAfterMs: 1_000 } : { status: admission },
        store: async (message) => {
          if (storeResult instanceof Error) throw storeResult
          stored.push(message)
          return storeResult
        },
        onRefused: () => {}
      },
      engine: { receipt: (peer, answers) => { engineReceipts.push({ peer, answers: [...answers] }) } },
      directory: { learn: async (peer, bytes) => { learned.push(`${peer}:${new TextDecoder().decode(bytes)}`); return record(alice, []) } },
      depositor: {
        depositReceipt: async (peer, answers) => {
          receipts.push({ peer, answers })
          events.dispatchEvent(new Event('receipt'))
          return true
        }
      },
      trusts: () => trusted,
      logger: defaultLogger(),
      clock: new FakeClock()
    }, { hosts: [host] })
    const chat = (seq: number, body = `m${seq}`): OpenedMail => ({
      sender: alice,
      message: { id: new Uint8Array(16).fill(seq), seq: BigInt(seq), sentAt: BigInt(seq), body },
      replyRecord: new TextEncoder().encode('alice record')
    })
    const envelope = (name: string): SessionEnvelope => ({ id: new TextEncoder().encode(name), envelope: new TextEncoder().encode(name) })
    const deleted = async (count: number): Promise<void> => {
      await until(() => session.deleted.length >= count, { on: [session.events, 'delete'], what: `${count} deleted`, timeout: 5_000 })
    }
    return {
      me,
      alice,
      host,
      session,
      opened,
      stored,
      receipts,
      engineReceipts,
      learned,
      receiver,
      chat,
      envelope,
      deleted,
      events,
      setStoreResult: (result: StoreResult | Error) => { storeResult = result },
      setAdmission: (value: typeof admission) => { admission = value },
      setTrusted: (value: boolean) => { trusted = value }
    }
  }

  it('is caught up once what waited on the host at start is taken, not before', async () => {
    const t = await setup()
    for (const name of ['e1', 'e2', 'e3']) t.opened.set(name, t.chat(Number(name[1])))
    let caughtUp = false
    const caught = t.receiver.caughtUp().then(() => { caughtUp = true })
    t.receiver.start()
    await until(() => t.receiver.status()[0].connected, { on: [t.receiver, 'change'], timeout: 5_000 })
    t.session.push([t.envelope('e1'), t.envelope('e2')])
    await t.deleted(2)
    // three waited: two taken is not caught up
    expect(caughtUp).toBe(false)
    t.session.push([t.envelope('e3')])
    await caught
    expect(t.stored.map(m => m.seq)).toEqual([1, 2, 3])
    // and later calls resolve at once
    await t.receiver.caughtUp()
    await t.receiver.stop()
  })

  it('is caught up when its host cannot be reached: nothing waits on it', async () => {
    const receiver = new MailboxReceiver({
      transport: {
        register: async () => { throw new Error('no route to the host') },
        open: async () => { throw new Error('unreachable') }
      },
      open: async () => { throw new Error('never called') },
      reception: { admit: () => ({ status: 'accept' }), store: async () => 'stored' as const, onRefused: () => {} },
      engine: { receipt: () => {} },
      directory: { learn: async () => { throw new Error('never called') } },
      depositor: { depositReceipt: async () => true },
      trusts: () => true,
      logger: defaultLogger(),
      clock: new FakeClock()
    }, { hosts: [{ peerId: await newPeer(), addrs: [] }] })
    receiver.start()
    await receiver.caughtUp()
    expect(receiver.status()[0].lastError).toBe('no route to the host')
    await receiver.stop()
  })

  it('stores each message with path mailbox, deletes it only once stored, learns the sender\'s record and answers it in one receipt', async () => {
    const t = await setup()
    t.opened.set('e1', t.chat(1))
    t.opened.set('e2', t.chat(2))
    t.receiver.start()
    await until(() => t.receiver.status()[0].connected, { on: [t.receiver, 'change'], timeout: 5_000 })
    expect(t.receiver.status()[0]).toMatchObject({ host: t.host.peerId.toString(), connected: true, fill: { envelopes: 3 } })
    t.session.push([t.envelope('e1'), t.envelope('e2')])
    await t.deleted(2)
    expect(t.stored.map(m => [m.seq, m.body, m.path, m.from.toString()])).toEqual([[1, 'm1', 'mailbox', t.alice.toString()], [2, 'm2', 'mailbox', t.alice.toString()]])
    expect(t.stored[0].connection).toBeUndefined()
    expect(t.learned).toEqual([`${t.alice.toString()}:alice record`, `${t.alice.toString()}:alice record`])
    await until(() => t.receipts.length === 1, { on: [t.events, 'receipt'], timeout: 5_000 })
    expect(t.receipts[0].peer).toBe(t.alice.toString())
    expect(t.receipts[0].answers.map(a => [a.id[0], ackStatusOf(a.status)])).toEqual([[1, Ack.Status.OK], [2, Ack.Status.OK]])
    await t.receiver.stop()
  })

  it('deletes envelopes that do not open, unanswered; keeps one whose message could not be stored', async () => {
    const t = await setup()
    t.opened.set('bad', new Error('AEAD failure'))
    t.opened.set('e1', t.chat(1))
    t.receiver.start()
    t.setStoreResult(new Error('disk I/O error'))
    t.session.push([t.envelope('bad'), t.envelope('e1')])
    await t.deleted(1)
    expect(t.session.deleted).toEqual(['bad'])
    expect(t.receipts).toEqual([])
    await t.receiver.stop()
  })

  it('answers DUPLICATE for a message stored before, RATE_LIMITED when told to wait, BLOCKED for a blocked sender, INVALID for a bad one, and deletes them all', async () => {
    const t = await setup()
    t.opened.set('dup', t.chat(1))
    t.opened.set('invalid', { sender: t.alice, message: { id: new Uint8Array(3), seq: 2n, sentAt: 0n, body: 'x' } })
    t.receiver.start()
    t.setStoreResult('duplicate')
    t.session.push([t.envelope('dup'), t.envelope('invalid')])
    await t.deleted(2)
    await until(() => t.receipts.length === 1, { on: [t.events, 'receipt'], timeout: 5_000 })
    expect(t.receipts[0].answers.map(a => ackStatusOf(a.status))).toEqual([Ack.Status.DUPLICATE, Ack.Status.INVALID])

    t.opened.set('limited', t.chat(3))
    t.setAdmission('rate-limit')
    t.session.push([t.envelope('limited')])
    await t.deleted(3)
    await until(() => t.receipts.length === 2, { on: [t.events, 'receipt'], timeout: 5_000 })
    expect(ackStatusOf(t.receipts[1].answers[0].status)).toBe(Ack.Status.RATE_LIMITED)

    t.opened.set('blocked', t.chat(4))
    t.setAdmission('block')
    t.session.push([t.envelope('blocked')])
    await t.deleted(4)
    await until(() => t.receipts.length === 3, { on: [t.events, 'receipt'], timeout: 5_000 })
    expect(ackStatusOf(t.receipts[2].answers[0].status)).toBe(Ack.Status.BLOCKED)
    await t.receiver.stop()
  })

  it('answers a stranger only for what it stored: its refusals are deleted unanswered and its record is not kept', async () => {
    const t = await setup()
    t.setTrusted(false)
    t.opened.set('limited', t.chat(1))
    t.opened.set('invalid', { sender: t.alice, message: { id: new Uint8Array(3), seq: 2n, sentAt: 0n, body: 'x' }, replyRecord: new TextEncoder().encode('alice record') })
    t.setAdmission('rate-limit')
    t.receiver.start()
    t.session.push([t.envelope('limited'), t.envelope('invalid')])
    await t.deleted(2)
    expect(t.receipts).toEqual([])
    expect(t.learned).toEqual([])

    t.setAdmission('accept')
    t.opened.set('stored', t.chat(3))
    t.session.push([t.envelope('stored')])
    await t.deleted(3)
    await until(() => t.receipts.length === 1, { on: [t.events, 'receipt'], timeout: 5_000 })
    expect(t.receipts[0].answers.map(a => ackStatusOf(a.status))).toEqual([Ack.Status.OK])
    expect(t.learned).toEqual([`${t.alice.toString()}:alice record`])
    await t.receiver.stop()
  })

  it('hands a receipt to the outbox, dropping entries with unknown statuses or malformed ids', async () => {
    const t = await setup()
    const id = new Uint8Array(16).fill(9)
    t.opened.set('receipt', { sender: t.alice, receipt: [{ id, status: ackStatusNumber(Ack.Status.OK) }, { id, status: 99 }, { id: new Uint8Array(4), status: 0 }] })
    t.receiver.start()
    t.session.push([t.envelope('receipt')])
    await t.deleted(1)
    expect(t.engineReceipts).toEqual([{ peer: t.alice.toString(), answers: [{ id: idToString(id), status: Ack.Status.OK }] }])
    expect(t.receipts).toEqual([])
    await t.receiver.stop()
  })
})
