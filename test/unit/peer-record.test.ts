import { generateKeyPair } from '@libp2p/crypto/keys'
import { Record as DHTRecord } from '@libp2p/kad-dht'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryDatastore } from 'datastore-core/memory'
import { Key } from 'interface-datastore'
import { TypedEventEmitter } from 'main-event'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { describe, expect, it } from 'vitest'
import {
  guardRecordStore, peerRecordKey, peerRecordSelectors, peerRecordValidators, peerRecords,
  PEER_RECORD_MAX_CLOCK_SKEW, PEER_RECORD_NAMESPACE, PEER_RECORD_VALIDITY
} from '../../protocols/peer-record/index.js'
import type { PeerRecordComponents } from '../../protocols/peer-record/index.js'
import type { PrivateKey } from '@libp2p/interface'

const validate = peerRecordValidators[PEER_RECORD_NAMESPACE]

interface Signer { privateKey: PrivateKey, peerId: ReturnType<typeof peerIdFromPrivateKey>, key: Uint8Array }

async function signer (): Promise<Signer> {
  const privateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey)
  return { privateKey, peerId, key: peerRecordKey(peerId) }
}

/** `who`'s record with `seq`, signed by `by` (default: `who` itself). */
async function record (who: Signer, seq: number, addr = '/ip4/127.0.0.1/tcp/1', by = who.privateKey): Promise<Uint8Array> {
  const envelope = await RecordEnvelope.seal(new PeerRecord({ peerId: who.peerId, multiaddrs: [multiaddr(addr)], seqNumber: BigInt(seq) }), by)
  return envelope.marshal()
}

function seqOf (value: Uint8Array): bigint {
  return PeerRecord.createFromProtobuf(RecordEnvelope.createFromProtobuf(value).payload).seqNumber
}

describe('peer record validator', () => {
  it('accepts a fresh record signed by its peer', async () => {
    const bob = await signer()
    await expect(validate(bob.key, await record(bob, Date.now()))).resolves.toBeUndefined()
    await expect(validate(bob.key, await record(bob, Date.now() - PEER_RECORD_VALIDITY + 60_000))).resolves.toBeUndefined()
  })

  it('refuses an expired record', async () => {
    const bob = await signer()
    await expect(validate(bob.key, await record(bob, Date.now() - PEER_RECORD_VALIDITY - 1000))).rejects.toThrow(/expired/)
    await expect(validate(bob.key, await record(bob, 1000))).rejects.toThrow(/expired/)
  })

  it('refuses a record dated too far in the future', async () => {
    const bob = await signer()
    await expect(validate(bob.key, await record(bob, Date.now() + PEER_RECORD_MAX_CLOCK_SKEW + 60_000))).rejects.toThrow(/future/)
  })

  it('refuses a record signed by another key', async () => {
    const bob = await signer()
    const mallory = await signer()
    await expect(validate(bob.key, await record(bob, Date.now(), '/ip4/127.0.0.1/tcp/666', mallory.privateKey))).rejects.toThrow(/not signed by the peer the key names/)
  })
})

describe('DHT record store guard', () => {
  const PREFIX = '/dht/record'

  function store (): { inner: MemoryDatastore, guarded: ReturnType<typeof guardRecordStore> } {
    const inner = new MemoryDatastore()
    return { inner, guarded: guardRecordStore(inner, { prefix: PREFIX, validators: peerRecordValidators, selectors: peerRecordSelectors }) }
  }

  /** What kad-dht writes: the record key base32-encoded under the prefix, a serialized DHT record. */
  function dsKey (key: Uint8Array): Key {
    return new Key(`${PREFIX}/${uint8ArrayToString(key, 'base32')}`, false)
  }

  function dhtRecord (key: Uint8Array, value: Uint8Array): Uint8Array {
    return new DHTRecord(key, value, new Date()).serialize()
  }

  async function held (ds: ReturnType<typeof guardRecordStore>, key: Uint8Array): Promise<bigint> {
    return seqOf(DHTRecord.deserialize(await ds.get(dsKey(key))).value)
  }

  it('refuses a lower-seq record when a higher one is held, and keeps the higher one', async () => {
    const bob = await signer()
    const { guarded } = store()
    const now = Date.now()
    await guarded.put(dsKey(bob.key), dhtRecord(bob.key, await record(bob, now)))
    await expect(guarded.put(dsKey(bob.key), dhtRecord(bob.key, await record(bob, now - 1000, '/ip4/127.0.0.1/tcp/2')))).rejects.toThrow(/held is newer or equal/)
    expect(await held(guarded, bob.key)).toBe(BigInt(now))
  })

  it('refuses a different record with the same seq, accepts the identical one and a newer one', async () => {
    const bob = await signer()
    const { guarded } = store()
    const now = Date.now()
    const first = await record(bob, now)
    await guarded.put(dsKey(bob.key), dhtRecord(bob.key, first))
    await expect(guarded.put(dsKey(bob.key), dhtRecord(bob.key, await record(bob, now, '/ip4/127.0.0.1/tcp/2')))).rejects.toThrow(/held is newer or equal/)
    await guarded.put(dsKey(bob.key), dhtRecord(bob.key, first))
    await guarded.put(dsKey(bob.key), dhtRecord(bob.key, await record(bob, now + 1)))
    expect(await held(guarded, bob.key)).toBe(BigInt(now + 1))
  })

  it('keeps the newer record whatever order concurrent puts arrive in', async () => {
    const bob = await signer()
    const { guarded } = store()
    const now = Date.now()
    const older = dhtRecord(bob.key, await record(bob, now - 5000))
    const newer = dhtRecord(bob.key, await record(bob, now))
    await Promise.allSettled([guarded.put(dsKey(bob.key), newer), guarded.put(dsKey(bob.key), older)])
    expect(await held(guarded, bob.key)).toBe(BigInt(now))
  })

  it('hides an expired record and lets any valid one replace it', async () => {
    const bob = await signer()
    const { inner, guarded } = store()
    const stale = Date.now() - PEER_RECORD_VALIDITY - 60_000
    // held from before it expired
    await inner.put(dsKey(bob.key), dhtRecord(bob.key, await record(bob, stale)))
    await expect(guarded.get(dsKey(bob.key))).rejects.toThrow(expect.objectContaining({ name: 'NotFoundError' }))
    const fresh = Date.now() - 60_000
    await guarded.put(dsKey(bob.key), dhtRecord(bob.key, await record(bob, fresh)))
    expect(await held(guarded, bob.key)).toBe(BigInt(fresh))
  })

  it('passes other keys through', async () => {
    const { guarded } = store()
    await guarded.put(new Key('/dht/provider/x'), Uint8Array.of(1))
    await guarded.put(new Key('/dht/provider/x'), Uint8Array.of(2))
    expect(await guarded.get(new Key('/dht/provider/x'))).toEqual(Uint8Array.of(2))
  })
})

describe('peer record lookup', () => {
  /** A lookup against a DHT that reports `answers` as it finds them and then fails, as kad-dht's get does when a correction is refused. */
  async function lookupWith (target: Signer, answers: Uint8Array[]): Promise<string[]> {
    const self = await signer()
    const log = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false })
    const components = {
      peerId: self.peerId,
      privateKey: self.privateKey,
      addressManager: { getAddresses: () => [] },
      contentRouting: {
        get: async (_key: Uint8Array, options: { onProgress?(evt: unknown): void }) => {
          for (const value of answers) {
            options.onProgress?.(new CustomEvent('kad-dht:query:value', { detail: { value } }))
          }
          throw new Error('Could not send correction')
        }
      },
      events: new TypedEventEmitter(),
      logger: { forComponent: () => log }
    } as unknown as PeerRecordComponents
    return (await peerRecords()(components).lookup(target.peerId)).map(a => a.toString())
  }

  it('uses the newest valid answer, ignoring expired and forged ones, even when the DHT get fails', async () => {
    const bob = await signer()
    const mallory = await signer()
    const now = Date.now()
    const found = await lookupWith(bob, [
      await record(bob, now - 60_000, '/ip4/127.0.0.1/tcp/1'),
      await record(bob, now - PEER_RECORD_VALIDITY - 60_000, '/ip4/127.0.0.1/tcp/2'),
      await record(bob, now, '/ip4/127.0.0.1/tcp/3'),
      await record(bob, now + 10_000, '/ip4/127.0.0.1/tcp/666', mallory.privateKey)
    ])
    expect(found).toEqual(['/ip4/127.0.0.1/tcp/3'])
  })

  it('finds nothing when every answer is expired', async () => {
    const bob = await signer()
    expect(await lookupWith(bob, [await record(bob, Date.now() - PEER_RECORD_VALIDITY - 60_000)])).toEqual([])
  })
})
