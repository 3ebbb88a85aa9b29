import { identify } from '@libp2p/identify'
import { Record as DHTRecord } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { reader, writer } from 'protons-runtime'
import { describe, expect, it } from 'vitest'
import { DEFAULT_DHT_PROTOCOL } from '../../common/constants.js'
import { peerRecordKey } from '../../protocols/peer-record/index.js'
import { reserved, useNetwork } from '../fixtures/network.js'
import type { Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

// kad-dht's wire Message (dht.proto): type = 1, key = 2, record = 3 (a serialized DHT Record)
const PUT_VALUE = 0
const GET_VALUE = 1

function encodeMessage (type: number, key: Uint8Array, record?: Uint8Array): Uint8Array {
  const w = writer()
  w.uint32(0x08)
  w.int32(type)
  w.uint32(0x12)
  w.bytes(key)
  if (record != null) {
    w.uint32(0x1a)
    w.bytes(record)
  }
  return w.finish()
}

/** The `record` field of a kad-dht Message, if any. */
function recordOf (message: Uint8Array): Uint8Array | undefined {
  const r = reader(message)
  let record: Uint8Array | undefined
  while (r.pos < r.len) {
    const tag = r.uint32()
    if (tag >>> 3 === 3) record = r.bytes()
    else r.skipType(tag & 7)
  }
  return record
}

function seqOf (dhtRecord: Uint8Array): bigint {
  const { value } = DHTRecord.deserialize(dhtRecord)
  return PeerRecord.createFromProtobuf(RecordEnvelope.createFromProtobuf(value).payload).seqNumber
}

/** One request on a fresh stream of the server's DHT protocol; the server's reply, or its refusal (a reset) as a rejection. */
async function rpc (attacker: Libp2p, server: Multiaddr, message: Uint8Array): Promise<Uint8Array> {
  const stream = await attacker.dialProtocol(server, DEFAULT_DHT_PROTOCOL, { signal: AbortSignal.timeout(20_000) })
  const lp = lpStream(stream)
  await lp.write(message)
  try {
    return (await lp.read({ signal: AbortSignal.timeout(20_000) })).subarray()
  } finally {
    await lp.unwrap().close().catch(() => {})
  }
}

describe('a replayed old peer record', () => {
  const net = useNetwork()

  it('does not replace the newer one a DHT server holds', async () => {
    const relay = await net.relay()
    const bob = await net.node({ listen: ['/webrtc'], relays: relay.multiaddrs })
    // the attacker: a plain libp2p peer speaking kad-dht's wire format by hand
    const attacker = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() }
    })
    try {
      const server = relay.multiaddrs[0]
      const key = peerRecordKey(bob.peerId)
      await reserved(bob)

      // bob publishes; the attacker records what the server hands out
      await bob.libp2p.services.peerRecords.publish()
      const old = recordOf(await rpc(attacker, server, encodeMessage(GET_VALUE, key)))
      expect(old).toBeDefined()

      // bob publishes again (a later seq): the server now holds the newer record
      await bob.libp2p.services.peerRecords.publish()
      const newer = recordOf(await rpc(attacker, server, encodeMessage(GET_VALUE, key)))
      expect(seqOf(newer!)).toBeGreaterThan(seqOf(old!))

      // replay of bob's old record, validly signed by bob: refused
      await expect(rpc(attacker, server, encodeMessage(PUT_VALUE, key, old))).rejects.toThrow()

      // and the server still answers with the newer one
      const after = recordOf(await rpc(attacker, server, encodeMessage(GET_VALUE, key)))
      expect(seqOf(after!)).toBeGreaterThanOrEqual(seqOf(newer!))
    } finally {
      await attacker.stop()
    }
  })
})
