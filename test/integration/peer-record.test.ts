import drain from 'it-drain'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { peerRecordKey, peerRecordSelectors, peerRecordValidators, PEER_RECORD_NAMESPACE } from '../../protocols/peer-record/index.js'
import { reserved, useNetwork } from '../fixtures/network.js'

const validate = peerRecordValidators[PEER_RECORD_NAMESPACE]
const select = peerRecordSelectors[PEER_RECORD_NAMESPACE]

async function signedRecord (seqNumber: bigint, addr = '/ip4/127.0.0.1/tcp/1'): Promise<{ key: Uint8Array, value: Uint8Array, peerId: ReturnType<typeof peerIdFromPrivateKey>, privateKey: Awaited<ReturnType<typeof generateKeyPair>> }> {
  const privateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey)
  const envelope = await RecordEnvelope.seal(new PeerRecord({ peerId, multiaddrs: [multiaddr(addr)], seqNumber }), privateKey)
  return { key: peerRecordKey(peerId), value: envelope.marshal(), peerId, privateKey }
}

describe('signed peer records in the DHT', () => {
  const net = useNetwork()

  it('accepts a record signed by the peer the key names', async () => {
    // seq is the signing time: a record from 1970 would be expired
    const { key, value } = await signedRecord(BigInt(Date.now()))
    await expect(validate(key, value)).resolves.toBeUndefined()
  })

  it('rejects a record signed by someone else, about someone else, or not a record at all', async () => {
    const bob = await signedRecord(1n)
    const mallory = await signedRecord(2n)
    // mallory's own valid record stored under bob's key
    await expect(validate(bob.key, mallory.value)).rejects.toThrow(/not signed by the peer the key names/)
    // a record about bob, but signed by mallory
    const forged = await RecordEnvelope.seal(new PeerRecord({ peerId: bob.peerId, multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/666')] }), mallory.privateKey)
    await expect(validate(bob.key, forged.marshal())).rejects.toThrow(/not signed by the peer the key names/)
    await expect(validate(bob.key, new Uint8Array([1, 2, 3]))).rejects.toThrow(/not a signed peer record/)
    await expect(validate(new TextEncoder().encode('/parley-peer/nope'), bob.value)).rejects.toThrow(/peer id/)
  })

  it('keeps the newest record', async () => {
    const privateKey = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(privateKey)
    const records = await Promise.all([5n, 9n, 7n].map(async seqNumber =>
      (await RecordEnvelope.seal(new PeerRecord({ peerId, multiaddrs: [], seqNumber }), privateKey)).marshal()))
    expect(select(peerRecordKey(peerId), records)).toBe(1)
  })

  it('lets a node that never met a relayed-only peer find its circuit addresses', async () => {
    const relay = await net.relay()
    const bob = await net.node({ listen: ['/webrtc'], relays: relay.multiaddrs })
    const alice = await net.node({ listen: [], relays: [], bootstrap: relay.multiaddrs })
    await reserved(bob)
    await bob.libp2p.services.peerRecords.publish()

    const found = await alice.libp2p.services.peerRecords.lookup(bob.peerId)
    const circuit = found.map(a => a.toString()).filter(a => a.includes('/p2p-circuit'))
    expect(circuit.length).toBeGreaterThan(0)
    expect(circuit.every(a => a.startsWith(relay.multiaddrs[0].toString()))).toBe(true)
  })

  it('is refused by DHT servers when forged', async () => {
    const relay = await net.relay()
    const bob = await net.node({ listen: ['/webrtc'], relays: relay.multiaddrs })
    const mallory = await net.node({ listen: [], relays: [], bootstrap: relay.multiaddrs })
    const alice = await net.node({ listen: [], relays: [], bootstrap: relay.multiaddrs })
    await reserved(bob)
    await bob.libp2p.services.peerRecords.publish()

    // mallory signs a record claiming bob lives at mallory's address
    const malloryKey = await generateKeyPair('Ed25519')
    const forged = await RecordEnvelope.seal(new PeerRecord({ peerId: bob.peerId, multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/666')], seqNumber: BigInt(Date.now() * 2) }), malloryKey)
    try {
      await drain(mallory.libp2p.services.dht.put(peerRecordKey(bob.peerId), forged.marshal()))
    } catch {
      // refused: what we want; the lookup below checks nobody stored it either
    }

    const found = (await alice.libp2p.services.peerRecords.lookup(bob.peerId)).map(a => a.toString())
    expect(found).not.toContain('/ip4/127.0.0.1/tcp/666')
    expect(found.some(a => a.includes('/p2p-circuit'))).toBe(true)
  })
})
