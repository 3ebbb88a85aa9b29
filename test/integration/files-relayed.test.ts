import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { fileUntil, sha256Of, writeTestFile } from '../fixtures/files.js'
import { reserved, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import { WAITING_FOR_DIRECT } from '../../index.js'
import type { FileInfo, ParleyNode } from '../../index.js'

async function nextOffer (node: ParleyNode): Promise<FileInfo> {
  return new Promise(resolve => { node.addEventListener('file:offer', evt => { resolve(evt.detail) }, { once: true }) })
}

describe('files between two nodes reachable only through a relay', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()

  /** No listener of their own, WebRTC off: a relay circuit is the only path, and it stays so. */
  async function relayedPair (circuitBytes?: number): Promise<{ alice: ParleyNode, bob: ParleyNode, dir: string }> {
    const dir = await tempDir()
    const relay = await net.relay(circuitBytes == null ? {} : { limits: { circuitBytes } })
    const config = { listen: [], relays: relay.multiaddrs }
    const alice = await net.node({ ...config, dataDir: join(dir, 'alice') })
    const bob = await net.node({ ...config, dataDir: join(dir, 'bob') })
    await Promise.all([reserved(alice), reserved(bob)])
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.libp2p.peerStore.merge(alice.peerId, { multiaddrs: alice.multiaddrs })
    await bob.addContact('alice', alice.peerId.toString())
    return { alice, bob, dir }
  }

  it('a 1 MiB file crosses over successive circuits, each within the relay\'s 128 KiB limit', async () => {
    const { alice, bob, dir } = await relayedPair()
    const source = join(dir, 'one.bin')
    await writeTestFile(source, 1024 * 1024, 9)
    const circuits = new Set<string>()
    bob.libp2p.addEventListener('connection:open', evt => { if (evt.detail.remotePeer.equals(alice.peerId)) circuits.add(evt.detail.id) })
    const sent = await alice.sendFile(bob.peerId, source)
    const done = await fileUntil(bob, sent.id, f => f.status === 'complete', 'the file to cross the relay', 100_000)
    expect(await sha256Of(done.path as string)).toBe(await sha256Of(source))
    // 1 MiB cannot fit in one 128 KiB circuit: it took several, all relayed
    expect(circuits.size).toBeGreaterThan(4)
    expect(bob.libp2p.getConnections(alice.peerId).every(c => c.limits != null)).toBe(true)
  }, 110_000)

  it('says it waits for a direct connection when the relay\'s limit is below one chunk', async () => {
    const { alice, bob, dir } = await relayedPair(24 * 1024)
    const source = join(dir, 'big.bin')
    await writeTestFile(source, 100_000, 2)
    const offered = nextOffer(bob)
    const sent = await alice.sendFile(bob.peerId, source)
    await offered
    // first over the circuit the offer came on, then a fresh one: neither carries a chunk
    const waiting = await fileUntil(bob, sent.id, f => f.status === 'waiting' && f.reason === WAITING_FOR_DIRECT, 'the transfer to wait for a direct connection')
    expect(waiting.bytes).toBe(0)
  })

  it('a 50 MiB file over WebRTC once the path is upgraded, hash-verified', async () => {
    const dir = await tempDir()
    const relay = await net.relay()
    // no TCP listener: the relay, then WebRTC, are the only ways in
    const config = { listen: ['/webrtc'], relays: relay.multiaddrs }
    const alice = await net.node({ ...config, dataDir: join(dir, 'alice') })
    const bob = await net.node({ ...config, dataDir: join(dir, 'bob'), files: { autoAcceptSize: 64 * 1024 * 1024 } })
    await Promise.all([reserved(alice), reserved(bob)])
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.libp2p.peerStore.merge(alice.peerId, { multiaddrs: alice.multiaddrs })
    await bob.addContact('alice', alice.peerId.toString())
    await alice.send(bob.peerId, 'hello first, over the relay')
    await until(() => bob.pathTo(alice.peerId) === 'direct', { on: [bob, 'path:change'], what: 'the path from bob to alice to become direct' })

    const source = join(dir, 'video.bin')
    await writeTestFile(source, 50 * 1024 * 1024, 13)
    const sent = await alice.sendFile(bob.peerId, source, { type: 'video/mp4' })
    const done = await fileUntil(bob, sent.id, f => f.status === 'complete', 'the file over WebRTC', 150_000)
    expect(await sha256Of(done.path as string)).toBe(await sha256Of(source))
    // the relay carries at most 128 KiB a circuit: 50 MiB went over WebRTC
    const direct = bob.libp2p.getConnections(alice.peerId).find(c => c.remoteAddr.toString().includes('/webrtc'))
    expect(direct?.status).toBe('open')
  }, 160_000)
})
