import { generateKeyPair } from '@libp2p/crypto/keys'
import { Record as DHTRecord } from '@libp2p/kad-dht'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryDatastore } from 'datastore-core/memory'
import { Key } from 'interface-datastore'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { describe, expect, it } from 'vitest'
import { generateMailboxKeyPair } from '../../protocols/mailbox/envelope.js'
import { MailboxRecord } from '../../protocols/mailbox/pb/mailbox.js'
import {
  MAILBOX_RECORD_CODEC, MAILBOX_RECORD_DOMAIN, MAILBOX_RECORD_MAX_CLOCK_SKEW, MAILBOX_RECORD_NAMESPACE, MAILBOX_RECORD_VALIDITY,
  MAX_MAILBOX_HOST_ADDRS, MAX_MAILBOX_RECORD_BYTES, MAX_MAILBOX_RECORD_HOSTS, MAX_MAILBOX_RECORD_KEYS,
  mailboxRecordKey, mailboxRecordSelectors, mailboxRecordValidators, openMailboxRecord, signMailboxRecord
} from '../../protocols/mailbox/record.js'
import { guardRecordStore } from '../../protocols/peer-record/index.js'
import type { MailboxRecordInfo } from '../../protocols/mailbox/record.js'
import type { PeerId, PrivateKey, Record } from '@libp2p/interface'

interface Signer { privateKey: PrivateKey, peerId: PeerId, key: Uint8Array }

async function signer (): Promise<Signer> {
  const privateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey)
  return { privateKey, peerId, key: mailboxRecordKey(peerId) }
}

const DAY = 24 * 60 * 60_000

describe('mailbox record', async () => {
  const bob = await signer()
  const host = await signer()
  const key1 = await generateMailboxKeyPair()
  const key2 = await generateMailboxKeyPair()
  const now = 1_700_000_000_000

  const content = (extra: Partial<Omit<MailboxRecordInfo, 'peerId'>> = {}): Omit<MailboxRecordInfo, 'peerId'> => ({
    seq: now,
    keys: [{ publicKey: key1.publicKey, expiresAt: now + 14 * DAY }, { publicKey: key2.publicKey, expiresAt: now + DAY }],
    hosts: [{ peerId: host.peerId, addrs: [multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${host.peerId}`), multiaddr('/dns4/relay.example/tcp/443/wss')] }],
    ...extra
  })

  it('round-trips, naming each host once (a trailing /p2p/<host> is left out)', async () => {
    const bytes = await signMailboxRecord(bob.privateKey, content())
    const info = await openMailboxRecord(bytes, { now, peerId: bob.peerId })
    expect(info.peerId.equals(bob.peerId)).toBe(true)
    expect(info.seq).toBe(now)
    expect(info.keys).toEqual([{ publicKey: key1.publicKey, expiresAt: now + 14 * DAY }, { publicKey: key2.publicKey, expiresAt: now + DAY }])
    expect(info.hosts).toHaveLength(1)
    expect(info.hosts[0].peerId.equals(host.peerId)).toBe(true)
    expect(info.hosts[0].addrs.map(a => a.toString())).toEqual(['/ip4/127.0.0.1/tcp/4001', '/dns4/relay.example/tcp/443/wss'])
    // and as a DHT server sees it
    await expect(openMailboxRecord(bytes, { now })).resolves.toBeDefined()
  })

  it('says which /im versions its owner reads (none but 1.0.0 when absent), at most 4 of at most 32 bytes', async () => {
    expect((await openMailboxRecord(await signMailboxRecord(bob.privateKey, content()), { now })).reads).toEqual([])
    const reads = await openMailboxRecord(await signMailboxRecord(bob.privateKey, content({ reads: ['/im/1.1.0'] })), { now })
    expect(reads.reads).toEqual(['/im/1.1.0'])
    await expect(signMailboxRecord(bob.privateKey, content({ reads: ['/a', '/b', '/c', '/d', '/e'] }))).rejects.toThrow(/at most 4/)
    await expect(signMailboxRecord(bob.privateKey, content({ reads: ['/' + 'x'.repeat(32)] }))).rejects.toThrow(/at most 32 bytes/)
  })

  it('keeps only the keys not expired; refuses a record whose keys all have', async () => {
    const bytes = await signMailboxRecord(bob.privateKey, content())
    expect((await openMailboxRecord(bytes, { now: now + 2 * DAY, ignoreAge: true })).keys.map(k => k.publicKey)).toEqual([key1.publicKey])
    await expect(openMailboxRecord(bytes, { now: now + 15 * DAY, ignoreAge: true })).rejects.toThrow(/every key of the record has expired/)
  })

  it('is valid for a day in the DHT, for as long as a key lives when carried (ignoreAge)', async () => {
    const bytes = await signMailboxRecord(bob.privateKey, content())
    await expect(openMailboxRecord(bytes, { now: now + MAILBOX_RECORD_VALIDITY })).resolves.toBeDefined()
    await expect(openMailboxRecord(bytes, { now: now + MAILBOX_RECORD_VALIDITY + 1 })).rejects.toThrow(/record expired/)
    await expect(openMailboxRecord(bytes, { now: now + 10 * DAY, ignoreAge: true })).resolves.toBeDefined()
    // a record from the future is refused either way
    await expect(openMailboxRecord(bytes, { now: now - MAILBOX_RECORD_MAX_CLOCK_SKEW - 1, ignoreAge: true })).rejects.toThrow(/future/)
  })

  it('refuses a record about another peer than expected, or signed by another', async () => {
    const mallory = await signer()
    const bytes = await signMailboxRecord(bob.privateKey, content())
    await expect(openMailboxRecord(bytes, { now, peerId: mallory.peerId })).rejects.toThrow(/is about .* not /)
    // mallory signs a payload claiming to be bob's
    const payload = MailboxRecord.encode({ peerId: bob.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, seq: BigInt(now), keys: [{ publicKey: key1.publicKey as Uint8Array<ArrayBuffer>, expiresAt: BigInt(now + DAY) }], hosts: [] })
    const forged = (await RecordEnvelope.seal(rawRecord(payload), mallory.privateKey)).marshal()
    await expect(openMailboxRecord(forged, { now })).rejects.toThrow(/not signed by the peer it is about/)
  })

  it('refuses another domain, another payload type, garbage, oversize', async () => {
    const peerRecord = (await RecordEnvelope.seal(new PeerRecord({ peerId: bob.peerId, multiaddrs: [], seqNumber: BigInt(now) }), bob.privateKey)).marshal()
    await expect(openMailboxRecord(peerRecord, { now })).rejects.toThrow(/not a signed mailbox record/)
    const payload = MailboxRecord.encode({ peerId: bob.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, seq: BigInt(now), keys: [{ publicKey: key1.publicKey as Uint8Array<ArrayBuffer>, expiresAt: BigInt(now + DAY) }], hosts: [] })
    const otherType = (await RecordEnvelope.seal(rawRecord(payload, new Uint8Array([0x03, 0x01])), bob.privateKey)).marshal()
    await expect(openMailboxRecord(otherType, { now })).rejects.toThrow(/payload type/)
    await expect(openMailboxRecord(new Uint8Array([1, 2, 3]), { now })).rejects.toThrow(/not a signed mailbox record/)
    await expect(openMailboxRecord(new Uint8Array(MAX_MAILBOX_RECORD_BYTES + 1), { now })).rejects.toThrow(/over 4096/)
    // a validly signed payload that is not a MailboxRecord
    const junk = (await RecordEnvelope.seal(rawRecord(new Uint8Array([0xff, 0xff, 0xff])), bob.privateKey)).marshal()
    await expect(openMailboxRecord(junk, { now })).rejects.toThrow(/undecodable|not a peer ID/)
  })

  it('refuses, signed or not, what breaks a bound', async () => {
    const keys = await Promise.all(Array.from({ length: MAX_MAILBOX_RECORD_KEYS + 1 }, async () => ({ publicKey: (await generateMailboxKeyPair()).publicKey, expiresAt: now + DAY })))
    const hosts = await Promise.all(Array.from({ length: MAX_MAILBOX_RECORD_HOSTS + 1 }, async () => ({ peerId: (await signer()).peerId, addrs: [] })))
    const addrs = Array.from({ length: MAX_MAILBOX_HOST_ADDRS + 1 }, (_, i) => multiaddr(`/ip4/127.0.0.1/tcp/${i + 1}`))
    await expect(signMailboxRecord(bob.privateKey, content({ keys }))).rejects.toThrow(/1 to 4 keys/)
    await expect(signMailboxRecord(bob.privateKey, content({ keys: [] }))).rejects.toThrow(/1 to 4 keys/)
    await expect(signMailboxRecord(bob.privateKey, content({ keys: [{ publicKey: new Uint8Array(33), expiresAt: now + DAY }] }))).rejects.toThrow(/32 bytes/)
    await expect(signMailboxRecord(bob.privateKey, content({ hosts }))).rejects.toThrow(/at most 8 hosts/)
    await expect(signMailboxRecord(bob.privateKey, content({ hosts: [{ peerId: host.peerId, addrs }] }))).rejects.toThrow(/at most 8 addresses/)
    const longAddrs = Array.from({ length: 8 }, (_, i) => multiaddr(`/dns4/${'a'.repeat(60)}.example/tcp/${i + 1}/wss`))
    const bigHosts = await Promise.all(Array.from({ length: 8 }, async () => ({ peerId: (await signer()).peerId, addrs: longAddrs })))
    await expect(signMailboxRecord(bob.privateKey, content({ hosts: bigHosts }))).rejects.toThrow(/over 4096/)

    // the same, signed by a writer that does not check
    const sign = async (record: Partial<MailboxRecord>): Promise<Uint8Array> => (await RecordEnvelope.seal(rawRecord(MailboxRecord.encode({
      peerId: bob.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, seq: BigInt(now), keys: [{ publicKey: key1.publicKey as Uint8Array<ArrayBuffer>, expiresAt: BigInt(now + DAY) }], hosts: [], ...record
    })), bob.privateKey)).marshal()
    const pb = (k: { publicKey: Uint8Array, expiresAt: number }): { publicKey: Uint8Array<ArrayBuffer>, expiresAt: bigint } => ({ publicKey: k.publicKey as Uint8Array<ArrayBuffer>, expiresAt: BigInt(k.expiresAt) })
    const pbHost = (h: { peerId: PeerId, addrs: Array<{ bytes: Uint8Array }> }): { peerId: Uint8Array<ArrayBuffer>, addrs: Array<Uint8Array<ArrayBuffer>> } =>
      ({ peerId: h.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, addrs: h.addrs.map(a => a.bytes as Uint8Array<ArrayBuffer>) })
    await expect(openMailboxRecord(await sign({ keys: keys.map(pb) }), { now })).rejects.toThrow(/undecodable.*too many/)
    await expect(openMailboxRecord(await sign({ keys: [] }), { now })).rejects.toThrow(/1 to 4 keys/)
    await expect(openMailboxRecord(await sign({ keys: [{ publicKey: new Uint8Array(31), expiresAt: BigInt(now + DAY) }] }), { now })).rejects.toThrow(/32 bytes/)
    await expect(openMailboxRecord(await sign({ hosts: hosts.map(pbHost) }), { now })).rejects.toThrow(/undecodable.*too many/)
    await expect(openMailboxRecord(await sign({ hosts: [pbHost({ peerId: host.peerId, addrs })] }), { now })).rejects.toThrow(/undecodable.*too many/)
    await expect(openMailboxRecord(await sign({ hosts: [pbHost({ peerId: host.peerId, addrs: [] }), pbHost({ peerId: host.peerId, addrs: [] })] }), { now })).rejects.toThrow(/listed twice/)
    await expect(openMailboxRecord(await sign({ hosts: [{ peerId: new Uint8Array([9, 9]), addrs: [] }] }), { now })).rejects.toThrow(/host is not a peer ID/)
    await expect(openMailboxRecord(await sign({ hosts: [{ peerId: host.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, addrs: [new Uint8Array([0xff, 0xff, 0xff])] }] }), { now })).rejects.toThrow(/not a multiaddr/)
  })

  describe('in the DHT', () => {
    const validate = mailboxRecordValidators[MAILBOX_RECORD_NAMESPACE]
    const select = mailboxRecordSelectors[MAILBOX_RECORD_NAMESPACE]
    const PREFIX = '/dht/record'

    const fresh = async (seq: number, by = bob): Promise<Uint8Array> => signMailboxRecord(by.privateKey, content({ seq, keys: [{ publicKey: key1.publicKey, expiresAt: seq + 14 * DAY }] }))
    const dsKey = (key: Uint8Array): Key => new Key(`${PREFIX}/${uint8ArrayToString(key, 'base32')}`, false)
    const dhtRecord = (key: Uint8Array, value: Uint8Array): Uint8Array => new DHTRecord(key, value, new Date()).serialize()
    const store = (inner = new MemoryDatastore()): ReturnType<typeof guardRecordStore> =>
      guardRecordStore(inner, { prefix: PREFIX, validators: mailboxRecordValidators, selectors: mailboxRecordSelectors })
    const heldSeq = async (ds: ReturnType<typeof guardRecordStore>): Promise<number> =>
      (await openMailboxRecord(DHTRecord.deserialize(await ds.get(dsKey(bob.key))).value, { now: Date.now() })).seq

    it('validates by the key\'s peer', async () => {
      const mallory = await signer()
      await expect(validate(bob.key, await fresh(Date.now()))).resolves.toBeUndefined()
      await expect(validate(mallory.key, await fresh(Date.now()))).rejects.toThrow(/is about/)
      await expect(validate(new TextEncoder().encode('/parley-mailbox/nope'), await fresh(Date.now()))).rejects.toThrow(/peer id/)
      await expect(validate(new TextEncoder().encode(`/parley-peer/${bob.peerId}`), await fresh(Date.now()))).rejects.toThrow(/parley-mailbox/)
      await expect(validate(bob.key, await fresh(Date.now() - MAILBOX_RECORD_VALIDITY - 60_000))).rejects.toThrow(/expired/)
    })

    it('selects the highest seq, the first of equals', async () => {
      const t = Date.now()
      expect(select(bob.key, [await fresh(t - 2), await fresh(t), await fresh(t - 1)])).toBe(1)
      expect(select(bob.key, [await fresh(t), await fresh(t)])).toBe(0)
      expect(select(bob.key, [new Uint8Array([1]), await fresh(t)])).toBe(1)
    })

    it('keeps the newer record held, refuses an equal seq with other content, hides an expired one', async () => {
      const inner = new MemoryDatastore()
      const guarded = store(inner)
      const t = Date.now()
      await guarded.put(dsKey(bob.key), dhtRecord(bob.key, await fresh(t)))
      await expect(guarded.put(dsKey(bob.key), dhtRecord(bob.key, await fresh(t - 1000)))).rejects.toThrow(/held is newer or equal/)
      const rival = await signMailboxRecord(bob.privateKey, content({ seq: t, keys: [{ publicKey: key2.publicKey, expiresAt: t + DAY }] }))
      await expect(guarded.put(dsKey(bob.key), dhtRecord(bob.key, rival))).rejects.toThrow(/held is newer or equal/)
      expect(await heldSeq(guarded)).toBe(t)
      await guarded.put(dsKey(bob.key), dhtRecord(bob.key, await fresh(t + 1)))
      expect(await heldSeq(guarded)).toBe(t + 1)

      await inner.put(dsKey(bob.key), dhtRecord(bob.key, await fresh(t - MAILBOX_RECORD_VALIDITY - 60_000)))
      await expect(guarded.get(dsKey(bob.key))).rejects.toThrow(expect.objectContaining({ name: 'NotFoundError' }))
    })
  })
})

/** A Record with any payload and payload type, under the mailbox record's domain. */
function rawRecord (payload: Uint8Array, codec = MAILBOX_RECORD_CODEC): Record {
  return { domain: MAILBOX_RECORD_DOMAIN, codec, marshal: () => payload, equals: () => false }
}
