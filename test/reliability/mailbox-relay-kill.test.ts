// A relay process keeps mailboxes on disk: SIGKILLed and started again between
// a deposit and the drain, it loses nothing; and what it keeps on disk holds
// neither the messages' text nor anything that names their sender.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { collect, useNetwork } from '../fixtures/network.js'
import { freePorts, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'

async function mailboxOpen (node: ParleyNode): Promise<void> {
  await until(() => node.status().mailboxes.length > 0 && node.status().mailboxes.every(m => m.connected), { on: [node, 'mailbox:change'], what: 'the node\'s mailboxes to open' })
}

/** Every file under `dir`, as bytes (the SQLite database, its WAL, the secret, libp2p's datastore…). */
async function filesUnder (dir: string): Promise<Array<{ path: string, bytes: Buffer }>> {
  const found: Array<{ path: string, bytes: Buffer }> = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    found.push({ path, bytes: await readFile(path) })
  }
  return found
}

describe('mailboxes on a relay process', () => {
  const tempDir = useTempDirs()
  useProcesses()
  const net = useNetwork()

  it('survive a SIGKILL of the relay between deposit and drain, and its files hold no body and no sender', async () => {
    const [port] = await freePorts(1)
    const relayDir = await tempDir()
    const relayArgs = ['--listen', `/ip4/127.0.0.1/tcp/${port}`, '--data-dir', relayDir, '--no-metrics']
    const relay = await startRelayProcess(relayArgs)
    const config = (dataDir: string): { dataDir: string, relays: string[], mailboxAfter: number } => ({ dataDir, relays: [relay.multiaddrs[0]], mailboxAfter: 300 })
    const bobDir = await tempDir()
    // Alice keeps no mailbox of her own there: as an owner, her peer ID would
    // rightly be in the relay's files (a mailbox is named by its owner)
    const alice = await net.node({ ...config(await tempDir()), mailboxes: [] })
    let bob = await net.node(config(bobDir))
    await mailboxOpen(bob)
    const bobId = bob.peerId
    await until(async () => (await alice.mailboxOf(bobId)) != null, { what: 'Bob\'s mailbox record in the DHT', every: 200 })
    await bob.stop()

    const bodies = Array.from({ length: 5 }, (_, i) => `a secret only bob reads #${i} ${crypto.randomUUID()}`)
    for (const body of bodies) expect((await alice.send(bobId, body)).status).toBe('stored')
    const sender = alice.peerId
    await alice.stop()

    // what the relay keeps in its mailbox files (its libp2p peer store is
    // another matter: it knows who connected): neither the text nor the sender
    const files = (await filesUnder(relayDir)).filter(f => f.path.includes('mailbox'))
    expect(files.length).toBeGreaterThan(0)
    const needles: Array<[string, Buffer]> = [
      ...bodies.map((body): [string, Buffer] => [`body "${body.slice(0, 24)}…"`, Buffer.from(body)]),
      ['the sender\'s peer ID (text)', Buffer.from(sender.toString())],
      ['the sender\'s peer ID (multihash bytes)', Buffer.from(sender.toMultihash().bytes)],
      ['the sender\'s public key', Buffer.from(sender.publicKey?.raw ?? new Uint8Array(32))],
      ['the sender\'s peer ID (base64)', Buffer.from(uint8ArrayToString(sender.toMultihash().bytes, 'base64'))]
    ]
    for (const { path, bytes } of files) {
      for (const [what, needle] of needles) {
        expect(bytes.includes(needle), `${path} holds ${what}`).toBe(false)
      }
    }

    await relay.stop('SIGKILL')
    await startRelayProcess(relayArgs)

    bob = await net.node(config(bobDir))
    const got = collect(bob)
    await until(() => got.length >= bodies.length, { on: [bob, 'message'], what: () => `${bodies.length} messages (${got.length} so far)` })
    expect(got.map(m => [m.body, m.path, m.from])).toEqual(bodies.map(body => [body, 'mailbox', sender.toString()]))
  })
})
