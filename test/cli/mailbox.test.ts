// Offline delivery as a user sees it, with real processes: `parley send` to a
// contact who is offline says the message is stored in their mailbox and exits
// 0; `parley status` lists the mailboxes; the contact gets it when back, and
// the sender's history turns it delivered.
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import { startDaemonProcess } from './daemon.js'
import type { DaemonProcess } from './daemon.js'

async function statusOf (node: DaemonProcess): Promise<any> {
  return JSON.parse((await node.cli(['status', '--json'])).stdout)
}

describe('parley send to a contact who is offline', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('is stored in their mailbox (exit 0), listed by status, fetched when they are back, and turns delivered', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const relayArgs = ['--relay', relay.multiaddrs[0]]
    const alice = await startDaemonProcess(await tempDir(), relayArgs)
    const bobDir = await tempDir()
    let bob = await startDaemonProcess(bobDir, relayArgs)
    // the invite carries Bob's mailbox record: no DHT lookup needed
    expect((await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])).code).toBe(0)
    await until(async () => (await statusOf(bob)).mailboxes[0]?.connected === true, { what: 'Bob\'s mailbox to open', every: 200 })
    await until(async () => (await statusOf(alice)).mailboxes[0]?.connected === true, { what: 'Alice\'s mailbox to open', every: 200 })
    const status = await alice.cli(['status'])
    expect(status.stdout).toMatch(new RegExp(`^mailboxes:\\n {2}open {2}${relay.peerId} {2}0/1000 envelopes`, 'm'))
    await bob.stop()

    const sent = await alice.cli(['send', 'bob', 'while you sleep', '--json'])
    expect(sent.stderr).toBe('')
    expect(sent.code).toBe(0)
    const result = JSON.parse(sent.stdout)
    expect(result).toMatchObject({ status: 'stored', path: 'mailbox' })
    const plain = await alice.cli(['send', 'bob', 'and this too'])
    expect(plain.code).toBe(0)
    expect(plain.stdout).toMatch(/^stored \S+: the recipient is offline; it waits sealed in their mailbox/)

    bob = await startDaemonProcess(bobDir, relayArgs)
    await until(async () => JSON.parse((await bob.cli(['history', alice.peerId, '--json'])).stdout).length === 2, { what: 'both messages at Bob', every: 200 })
    const history = JSON.parse((await bob.cli(['history', alice.peerId, '--json'])).stdout)
    expect(history.map((m: any) => m.body)).toEqual(['while you sleep', 'and this too'])
    // fetched from the mailbox as Bob starts; Alice's node, which keeps trying
    // too, may get one to him over the relay first (on a loaded machine it
    // did): each is shown once, by whichever copy came first
    const paths = history.map((m: any) => m.path)
    expect(paths.every((path: string) => path === 'mailbox' || path === 'relayed')).toBe(true)
    expect(paths).toContain('mailbox')
    await until(async () => JSON.parse((await alice.cli(['history', 'bob', '--json'])).stdout).every((m: any) => m.status === 'delivered'), { what: 'delivered at Alice', every: 200 })
  })
})
