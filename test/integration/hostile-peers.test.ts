import { chmod, mkdir, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { idToString } from '../../node/message-id.js'
import { DEFAULT_LIMITS } from '../../node/policy.js'
import { MAX_BODY_BYTES } from '../../protocols/im/index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { collect, nextMessages, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import { rawMessage, useRawImClients } from '../fixtures/raw-im.js'
import type { StatusChange } from '../../node/types.js'

async function dirBytes (dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size
  }
  return total
}

describe('a stranger', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()
  const rawClient = useRawImClients()

  it('cannot fill the disk: its messages wait as a request up to a quota, the rest is answered RATE_LIMITED', async () => {
    const dataDir = await tempDir()
    const bob = await net.node({ dataDir })
    const got = collect(bob)
    const before = await dirBytes(dataDir)
    const mallory = await rawClient()
    const stream = await mallory.open(bob.multiaddrs)

    // 200 messages of 32 KiB: 6.4 MiB
    const body = 'x'.repeat(MAX_BODY_BYTES)
    const acks = await stream.send(Array.from({ length: 200 }, (_, i) => rawMessage(i + 1, body)))
    const ok = acks.filter(a => a.status === 'OK').length
    expect(ok).toBe(Math.floor(DEFAULT_LIMITS.requestBytes / MAX_BODY_BYTES))
    // the rest is not lost for an honest sender: it is told to come back later
    expect(acks.slice(ok).every(a => a.status === 'RATE_LIMITED' && (a.retryAfterMs ?? 0) > 0)).toBe(true)

    await until(() => got.length >= ok, { on: [bob, 'message'], what: () => `bob to receive ${ok} messages (he has ${got.length})` })
    expect(got.every(m => m.request === true && m.from === mallory.peerId)).toBe(true)
    expect(bob.requests()).toEqual([expect.objectContaining({ peerId: mallory.peerId, messages: ok, bytes: ok * MAX_BODY_BYTES })])
    expect(bob.status().requests).toBe(1)
    // what was stored, and little more
    expect(await dirBytes(dataDir) - before).toBeLessThan(2 * 1024 * 1024)
  })

  it('from a thousand fresh identities costs no more than the quota for all strangers', async () => {
    const bob = await net.node({ limits: { allRequestMessages: 5 } })
    const results: string[] = []
    for (let i = 0; i < 8; i++) {
      const client = await rawClient()
      const stream = await client.open(bob.multiaddrs)
      const [ack] = await stream.send([rawMessage(1, `hello from identity ${i}`)])
      results.push(ack.status)
    }
    expect(results).toEqual(['OK', 'OK', 'OK', 'OK', 'OK', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED'])
    expect(bob.requests()).toHaveLength(5)
  })

  it('is answered BLOCKED once blocked: its waiting messages are deleted and nothing more is shown', async () => {
    const bob = await net.node()
    const got = collect(bob)
    const mallory = await rawClient()
    const stream = await mallory.open(bob.multiaddrs)
    expect((await stream.send([rawMessage(1, 'buy my stuff')]))[0].status).toBe('OK')
    await until(() => got.length === 1, { on: [bob, 'message'], what: 'bob to receive a message' })

    expect(bob.block(mallory.peerId)).toEqual({ peerId: mallory.peerId, deleted: 1 })
    expect(bob.requests()).toEqual([])
    expect(bob.history(mallory.peerId)).toEqual([])
    expect(bob.blocked()).toEqual([expect.objectContaining({ peerId: mallory.peerId })])
    const acks = await stream.send([rawMessage(2, 'buy it now'), rawMessage(3, 'please')])
    expect(acks.map(a => a.status)).toEqual(['BLOCKED', 'BLOCKED'])
    expect(got).toHaveLength(1)
    expect(bob.history(mallory.peerId)).toEqual([])

    expect(bob.unblock(mallory.peerId)).toBe(true)
    expect(bob.blocked()).toEqual([])
    expect((await stream.send([rawMessage(4, 'sorry')]))[0].status).toBe('OK')
  })

  it('is cut off when it keeps sending after being told to wait, and neither it nor a fresh identity from its IP can reconnect for a while', async () => {
    const bob = await net.node({ limits: { strangerBurst: 5, abuseThreshold: 20 } })
    const mallory = await rawClient()
    const stream = await mallory.open(bob.multiaddrs)
    // a flood that ignores RATE_LIMITED: the connection goes before it is through
    await expect(stream.send(Array.from({ length: 500 }, (_, i) => rawMessage(i + 1, 'spam')))).rejects.toThrow()
    await until(() => bob.libp2p.getConnections(mallory.libp2p.peerId).length === 0, { on: [bob.libp2p, 'connection:close'], what: 'bob to close his connections to mallory' })
    await until(() => mallory.libp2p.getConnections(bob.peerId).length === 0, { on: [mallory.libp2p, 'connection:close'], what: 'mallory\'s connections to bob to close' })
    await expect(mallory.open(bob.multiaddrs)).rejects.toThrow()
    // nor under a fresh identity from the same IP; a contact there is still welcome
    const again = await rawClient()
    await expect(again.open(bob.multiaddrs)).rejects.toThrow()
    expect(bob.libp2p.services.connectionGuard.refused.denied).toBe(2)
    const friend = await rawClient()
    await bob.addContact('friend', friend.peerId)
    expect((await (await friend.open(bob.multiaddrs)).send([rawMessage(1, 'hi')]))[0].status).toBe('OK')
    expect(bob.requests()[0]).toMatchObject({ peerId: mallory.peerId, messages: 5 })
  })

  it('is declined: its messages are deleted', async () => {
    const bob = await net.node()
    const got = collect(bob)
    const stranger = await rawClient()
    const stream = await stranger.open(bob.multiaddrs)
    await stream.send([rawMessage(1, 'hi'), rawMessage(2, 'are you there?')])
    await until(() => got.length === 2, { on: [bob, 'message'], what: () => `bob to receive 2 messages (he has ${got.length})` })
    expect(bob.declineRequest(stranger.peerId)).toEqual({ peerId: stranger.peerId, deleted: 2 })
    expect(bob.requests()).toEqual([])
    expect(bob.history(stranger.peerId)).toEqual([])
  })

  it('loses nothing to the quota: once accepted, what waited in its outbox is delivered once, in order', async () => {
    const alice = await net.node({ retry: { initialDelay: 100, maxDelay: 1_000 } })
    const bob = await net.node({ limits: { requestMessages: 10, requestRetryAfterMs: 1_000 } })
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    const got = collect(bob)
    const limited: StatusChange[] = []
    alice.addEventListener('message:status', (evt) => { if (evt.detail.reason?.startsWith('rate limited') === true) limited.push(evt.detail) })

    const ids = Array.from({ length: 15 }, (_, i) => alice.queue(bob.peerId, `note ${i + 1}`))
    await until(() => got.length >= 10, { on: [bob, 'message'], what: () => `bob to receive 10 messages (he has ${got.length})` })
    await until(() => limited.length > 0, { on: [alice, 'message:status'], what: 'alice to be told to wait' })
    expect(got.every(m => m.request === true)).toBe(true)
    expect(alice.getMessage(ids[14])?.status).toBe('queued')

    const accepted = await bob.acceptRequest(alice.peerId, { name: 'alice' })
    expect(accepted).toMatchObject({ peerId: alice.peerId.toString(), accepted: 10, contact: { name: 'alice' } })
    expect(bob.requests()).toEqual([])
    await until(() => got.length >= 15, { on: [bob, 'message'], what: () => `bob to receive 15 messages (he has ${got.length})` })
    expect(got.map(m => m.body)).toEqual(Array.from({ length: 15 }, (_, i) => `note ${i + 1}`))
    expect(got.slice(10).every(m => m.request == null)).toBe(true)
    expect(bob.history(alice.peerId).every(m => m.request == null)).toBe(true)
  })

  it('is not a stranger once this node wrote to it first', async () => {
    const alice = await net.node()
    const bob = await net.node()
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.libp2p.peerStore.merge(alice.peerId, { multiaddrs: alice.multiaddrs })
    const atBob = nextMessages(bob, 1)
    await alice.send(bob.peerId, 'hello bob')
    expect((await atBob)[0].request).toBe(true)
    const atAlice = nextMessages(alice, 1)
    await bob.send(alice.peerId, 'hello alice')
    // bob answered: his request is accepted by that, and alice wrote first
    expect((await atAlice)[0].request).toBeUndefined()
    expect(bob.requests()).toEqual([])
  })

  it('has any 16 bytes accepted as a message id, not only a UUID', async () => {
    const bob = await net.node()
    const client = await rawClient()
    const stream = await client.open(bob.multiaddrs)
    const id = new Uint8Array(16).fill(0xff)
    const replyTo = new Uint8Array(16)
    const arrived = nextMessages(bob, 1)
    expect((await stream.send([rawMessage(1, 'not a uuid', { id, replyTo })]))[0].status).toBe('OK')
    const [message] = await arrived
    expect(message.id).toBe(idToString(id))
    expect(message.replyTo).toBe('00000000-0000-0000-0000-000000000000')
    expect(bob.getMessage(message.id)?.body).toBe('not a uuid')
    // and bob can answer it
    expect(() => bob.queue(client.peerId, 'reply', { replyTo: message.id })).not.toThrow()
  })

  it('cannot hold more than maxHeldPerPeer messages behind a missing seq', async () => {
    const bob = await net.node({ limits: { maxHeldPerPeer: 5 } })
    const client = await rawClient()
    await bob.acceptRequest(client.peerId)
    const stream = await client.open(bob.multiaddrs)
    const got = collect(bob)
    expect((await stream.send([rawMessage(1, 'one')])).map(a => a.status)).toEqual(['OK'])
    const ahead = await stream.send(Array.from({ length: 7 }, (_, i) => rawMessage(i + 3, `m${i + 3}`)))
    expect(ahead.map(a => a.status)).toEqual(['OK', 'OK', 'OK', 'OK', 'OK', 'RATE_LIMITED', 'RATE_LIMITED'])
    // the missing one still gets through, and frees the rest
    expect((await stream.send([rawMessage(2, 'two')])).map(a => a.status)).toEqual(['OK'])
    await until(() => got.length === 7, { on: [bob, 'message'], what: () => `bob to receive 7 messages (he has ${got.length})` })
    expect(got.map(m => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7])
  })
})

describe('a recipient', () => {
  const net = useNetwork()
  const rawClient = useRawImClients()

  for (const [retryAfterMs, least, most] of [[0, 1_000, 1_100], [2 ** 32 - 1, 59 * 60_000, 60 * 60_000 + 100]]) {
    it(`cannot make the sender spin with RATE_LIMITED retry_after_ms ${retryAfterMs}`, async () => {
      const warnings: Error[] = []
      const onWarning = (w: Error): void => { warnings.push(w) }
      process.on('warning', onWarning)
      try {
        const hostile = await rawClient()
        hostile.serve(() => ({ status: 'RATE_LIMITED' as any, retryAfterMs }))
        const alice = await net.node({ retry: { initialDelay: 10, maxDelay: 100 } })
        await alice.libp2p.peerStore.merge(hostile.libp2p.peerId, { multiaddrs: hostile.libp2p.getMultiaddrs() })
        const limited = new Promise<StatusChange>(resolve => {
          alice.addEventListener('message:status', (evt) => { if (evt.detail.reason?.startsWith('rate limited') === true) resolve(evt.detail) })
        })
        const id = alice.queue(hostile.peerId, 'hi')
        await limited
        const [entry] = alice.outbox()
        expect(entry.id).toBe(id)
        const wait = entry.nextAttemptAt - Date.now()
        expect(wait).toBeGreaterThan(least - 200)
        expect(wait).toBeLessThanOrEqual(most)
        // a new connection does not cut the wait short
        await alice.libp2p.hangUp(hostile.libp2p.peerId)
        await alice.libp2p.dial(hostile.libp2p.getMultiaddrs())
        expect(alice.outbox()[0].nextAttemptAt).toBe(entry.nextAttemptAt)
        expect(hostile.received).toHaveLength(1)
        expect(warnings.filter(w => w.name === 'TimeoutOverflowWarning')).toEqual([])
      } finally {
        process.off('warning', onWarning)
      }
    })
  }
})

describe('a full message store', () => {
  const net = useNetwork()
  const rawClient = useRawImClients()

  it('answers RATE_LIMITED to everyone, says so in status, and refuses to queue', async () => {
    const bob = await net.node()
    const used = bob.status().storage.usedBytes
    await bob.stop()
    const full = await net.node({ limits: { maxStoreBytes: used + 64 * 1024 } })
    const friend = await rawClient()
    await full.addContact('friend', friend.peerId)
    const stream = await friend.open(full.multiaddrs)
    const body = 'y'.repeat(16 * 1024)
    const statuses: string[] = []
    for (let seq = 1; statuses.at(-1) !== 'RATE_LIMITED' && seq <= 16; seq++) {
      statuses.push((await stream.send([rawMessage(seq, body)]))[0].status)
    }
    expect(statuses.at(-1)).toBe('RATE_LIMITED')
    expect(full.status().storage).toMatchObject({ full: true, limitBytes: used + 64 * 1024 })
    expect(() => full.queue(friend.peerId, 'hi')).toThrow(expect.objectContaining({ name: 'StorageFullError' }))
  })
})

describe('a data dir', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()

  it('keeps the message store (and its WAL) to its owner, whatever mode the dir had', async () => {
    const dataDir = join(await tempDir(), 'data')
    await mkdir(dataDir, { mode: 0o755 })
    await chmod(dataDir, 0o755)
    const node = await net.node({ dataDir })
    await node.addContact('someone', '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW')
    await node.stop()
    // a second start, with the WAL and shared-memory files left by the first
    await net.node({ dataDir })
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700)
    const files = (await readdir(dataDir)).filter(f => f.startsWith('messages.db'))
    expect(files).toContain('messages.db')
    for (const file of files) expect(`${file} ${((await stat(join(dataDir, file))).mode & 0o777).toString(8)}`).toBe(`${file} 600`)
  })
})

describe('node API input', () => {
  const net = useNetwork()

  it('says what is wrong with a message id that is not one', async () => {
    const node = await net.node()
    expect(() => node.getMessage(undefined as unknown as string)).toThrow(expect.objectContaining({ name: 'InvalidMessageError' }))
    expect(() => node.getMessage('nope')).toThrow(expect.objectContaining({ name: 'InvalidMessageError' }))
  })

  it('refuses to repoint a contact, or to name one like a peer ID, unless told to', async () => {
    const alice = await net.node()
    const bob = await net.node()
    const carol = await net.node()
    await alice.addContact('bob', bob.peerId.toString())
    await expect(alice.addContact('bob', carol.peerId.toString())).rejects.toMatchObject({ name: 'ContactExistsError' })
    expect(alice.resolvePeer('bob').equals(bob.peerId)).toBe(true)
    await alice.addContact('bob', carol.peerId.toString(), { replace: true })
    expect(alice.resolvePeer('bob').equals(carol.peerId)).toBe(true)
    // a name that is a peer ID would hide that peer
    await expect(alice.addContact(bob.peerId.toString(), carol.peerId.toString())).rejects.toMatchObject({ name: 'InvalidContactNameError' })
    expect(alice.resolvePeer(bob.peerId.toString()).equals(bob.peerId)).toBe(true)
  })
})
