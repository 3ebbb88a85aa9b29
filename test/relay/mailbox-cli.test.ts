import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { MAILBOX_PROTOCOL, MailboxClient } from '../../protocols/mailbox/client.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { freePorts, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import { bareNode } from './hop.js'
import type { StoredEnvelopeInfo } from '../../protocols/mailbox/client.js'
import type { Libp2p } from '@libp2p/interface'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

describe('parley relay (the process) as a mailbox host', () => {
  const tempDir = useTempDirs()
  useProcesses()
  let peers: Libp2p[] = []

  afterEach(async () => {
    const stopping = peers
    peers = []
    await Promise.allSettled(stopping.map(async p => { await p.stop() }))
  })

  async function peer (): Promise<Libp2p> {
    const node = await bareNode()
    peers.push(node)
    return node
  }

  async function protocolsOf (client: Libp2p, relay: string): Promise<string[]> {
    const relayPeer = peerIdFromString(relay)
    await until(async () => (await client.peerStore.get(relayPeer).catch(() => undefined))?.protocols.includes('/ipfs/id/1.0.0') === true, { on: [client, 'peer:identify'], what: 'the relay to be identified' })
    return (await client.peerStore.get(relayPeer)).protocols
  }

  it('serves mailboxes by default and says so; --no-mailbox serves none', async () => {
    const on = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics'])
    expect(on.stdout()).toMatch(/^mailboxes: on \(in memory: lost on restart, give --data-dir\) maxMailboxes=10000 /m)
    const client = await peer()
    await client.dial(multiaddr(on.multiaddrs[0]))
    expect(await protocolsOf(client, on.peerId)).toContain(MAILBOX_PROTOCOL)

    const off = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--no-mailbox'])
    expect(off.stdout()).toMatch(/^mailboxes: off$/m)
    const other = await peer()
    await other.dial(multiaddr(off.multiaddrs[0]))
    const protocols = await protocolsOf(other, off.peerId)
    expect(protocols).toContain('/libp2p/circuit/relay/0.2.0/hop')
    expect(protocols).not.toContain(MAILBOX_PROTOCOL)
  })

  it('loses no acknowledged deposit when the process is SIGKILLed between deposit and drain', async () => {
    const dataDir = await tempDir()
    const [port] = await freePorts(1)
    const args = ['--data-dir', dataDir, '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--no-metrics']
    const first = await startRelayProcess(args)
    const host = peerIdFromString(first.peerId)
    const bob = await peer()
    const alice = await peer()
    await bob.dial(multiaddr(first.multiaddrs[0]))
    await alice.dial(multiaddr(first.multiaddrs[0]))
    const bobClient = new MailboxClient({ dialer: bob, logger: bob.logger })
    const aliceClient = new MailboxClient({ dialer: alice, logger: alice.logger })
    await bobClient.register(host)
    const ids: Uint8Array[] = []
    for (let i = 0; i < 20; i++) ids.push((await aliceClient.deposit(host, bob.peerId, bytes(`message ${i}`))).id)

    const killed = await first.stop('SIGKILL')
    expect(killed.signal).toBe('SIGKILL')

    const second = await startRelayProcess(args)
    expect(second.peerId).toBe(first.peerId)
    await bob.dial(multiaddr(second.multiaddrs[0]))
    const session = await bobClient.open(host)
    expect(session.info.envelopes).toBe(20)
    const got: StoredEnvelopeInfo[] = []
    for await (const batch of session) {
      got.push(...batch)
      if (got.length >= 20) break
    }
    expect(got.map(e => new TextDecoder().decode(e.envelope))).toEqual(Array.from({ length: 20 }, (_, i) => `message ${i}`))
    expect(got.map(e => e.id)).toEqual(ids)
    await session.close()
  })
})
