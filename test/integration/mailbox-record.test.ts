import { join } from 'node:path'
import drain from 'it-drain'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { describe, expect, it } from 'vitest'
import { loadIdentity } from '../../common/identity.js'
import { generateMailboxKeyPair } from '../../protocols/mailbox/envelope.js'
import { MailboxRecordPublisher } from '../../protocols/mailbox/publisher.js'
import { mailboxRecordKey, signMailboxRecord } from '../../protocols/mailbox/record.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { reserved, useNetwork } from '../fixtures/network.js'
import type { MailboxRecordSource } from '../../protocols/mailbox/publisher.js'
import type { ParleyNode } from '../../index.js'
import type { PrivateKey } from '@libp2p/interface'

const DAY = 24 * 60 * 60_000

function publisherOf (node: ParleyNode, source: MailboxRecordSource = { record: async () => undefined }): MailboxRecordPublisher {
  return new MailboxRecordPublisher({ contentRouting: node.libp2p.contentRouting, logger: node.libp2p.logger }, { source })
}

describe('mailbox records in parley\'s DHT', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()

  /** A node whose identity key the test holds, to sign its mailbox records. */
  async function nodeWithKey (config: Parameters<typeof net.node>[0]): Promise<{ node: ParleyNode, privateKey: PrivateKey }> {
    const dataDir = join(await tempDir(), 'node')
    const privateKey = await loadIdentity(dataDir)
    return { node: await net.node({ ...config, dataDir }), privateKey }
  }

  it('are found by a node that never met the publisher, only a DHT server; a newer one replaces the older', async () => {
    const relay = await net.relay()
    const { node: bob, privateKey } = await nodeWithKey({ listen: ['/webrtc'], relays: relay.multiaddrs })
    const alice = await net.node({ listen: [], relays: [], bootstrap: relay.multiaddrs })
    await reserved(bob)

    const mailboxKey = await generateMailboxKeyPair()
    let seq = Date.now()
    const hosts = [{ peerId: relay.peerId, addrs: relay.multiaddrs }]
    const record = async (): Promise<Uint8Array> => signMailboxRecord(privateKey, { seq, keys: [{ publicKey: mailboxKey.publicKey, expiresAt: seq + 14 * DAY }], hosts })
    const publisher = publisherOf(bob, { record })
    expect(await publisher.publish()).toBe(true)

    const lookup = publisherOf(alice)
    const found = await lookup.lookup(bob.peerId)
    expect(found?.peerId.equals(bob.peerId)).toBe(true)
    expect(found?.seq).toBe(seq)
    expect(found?.keys.map(k => k.publicKey)).toEqual([mailboxKey.publicKey])
    expect(found?.hosts[0].peerId.equals(relay.peerId)).toBe(true)
    expect(found?.hosts[0].addrs.map(a => a.toString())).toEqual(relay.multiaddrs.map(a => a.decapsulate('/p2p').toString()))
    expect(alice.libp2p.getConnections(bob.peerId)).toHaveLength(0)

    const older = found!.bytes
    seq += 1000
    await publisher.publish()
    expect((await lookup.lookup(bob.peerId))?.seq).toBe(seq)

    // bob's own older record, replayed by someone else: the server keeps the newer
    try {
      await drain(alice.libp2p.services.dht.put(mailboxRecordKey(bob.peerId), older))
    } catch {
      // refused: what we want; the lookup below checks nobody stored it either
    }
    expect((await lookup.lookup(bob.peerId))?.seq).toBe(seq)
    expect(await lookup.lookup(alice.peerId)).toBeUndefined()
  })

  it('are refused by DHT servers when forged', async () => {
    const relay = await net.relay()
    const { node: bob, privateKey } = await nodeWithKey({ listen: ['/webrtc'], relays: relay.multiaddrs })
    const mallory = await net.node({ listen: [], relays: [], bootstrap: relay.multiaddrs })
    const alice = await net.node({ listen: [], relays: [], bootstrap: relay.multiaddrs })
    await reserved(bob)
    const bobKey = await generateMailboxKeyPair()
    const seq = Date.now()
    await publisherOf(bob, { record: async () => signMailboxRecord(privateKey, { seq, keys: [{ publicKey: bobKey.publicKey, expiresAt: seq + DAY }], hosts: [] }) }).publish()

    // mallory signs a newer record with her own mailbox key, under bob's DHT key
    const malloryIdentity = await generateKeyPair('Ed25519')
    const malloryKey = await generateMailboxKeyPair()
    const forged = await signMailboxRecord(malloryIdentity, { seq: seq + 60_000, keys: [{ publicKey: malloryKey.publicKey, expiresAt: seq + DAY }], hosts: [] })
    try {
      await drain(mallory.libp2p.services.dht.put(mailboxRecordKey(bob.peerId), forged))
    } catch {
      // refused
    }
    const found = await publisherOf(alice).lookup(bob.peerId)
    expect(found?.seq).toBe(seq)
    expect(found?.keys[0].publicKey).toEqual(bobKey.publicKey)
  })
})
