import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { nextMessages, reserved, useNetwork } from '../fixtures/network.js'
import { freePorts, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'

describe('a relay restart', () => {
  const tempDir = useTempDirs()
  useProcesses()
  const net = useNetwork()

  const holds = (node: ParleyNode): boolean => node.status().relays.every(r => r.reserved)
  // the node's own word that a reservation came or went; a failure says what each node held
  const changes = (...nodes: ParleyNode[]): Array<[EventTarget, string]> => nodes.map(n => [n.libp2p.services.reservations, 'change'])
  const held = (name: string, node: ParleyNode): string => `${name}: ${JSON.stringify(node.status().relays)}, addresses ${node.multiaddrs.map(String).join(' ')}, connections ${node.libp2p.getConnections().map(c => `${c.remotePeer.toString()} ${c.status}`).join(', ')}`

  it('is healed by the nodes themselves, and a message sent during the outage arrives after it', async () => {
    const [port] = await freePorts(1)
    const relayArgs = ['--listen', `/ip4/127.0.0.1/tcp/${port}`, '--data-dir', await tempDir(), '--no-metrics']
    const relay = await startRelayProcess(relayArgs)
    // relayed-only: no listener of their own, no WebRTC; the relay is the only way between them
    const config = { listen: [], relays: [relay.multiaddrs[0]], retry: { initialDelay: 200, maxDelay: 2_000 } }
    const alice = await net.node(config)
    const bob = await net.node(config)
    await Promise.all([reserved(alice), reserved(bob)])
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    const before = nextMessages(bob, 1)
    expect((await alice.send(bob.peerId, 'before the outage')).path).toBe('relayed')
    await before

    await relay.stop('SIGKILL')
    await until(() => !holds(alice) && !holds(bob), { on: changes(alice, bob), what: () => `both nodes to lose their reservations; ${held('alice', alice)}; ${held('bob', bob)}` })

    const during = nextMessages(bob, 1)
    const id = alice.queue(bob.peerId, 'sent during the outage')
    expect(alice.getMessage(id)?.status).not.toBe('delivered')

    // same identity, same port: the address users configured stays valid
    await startRelayProcess(relayArgs)
    await Promise.all([
      until(() => holds(alice), { on: changes(alice), what: () => `alice to reserve again; ${held('alice', alice)}` }),
      until(() => holds(bob), { on: changes(bob), what: () => `bob to reserve again; ${held('bob', bob)}` })
    ])

    expect((await during)[0]).toMatchObject({ body: 'sent during the outage', path: 'relayed', from: alice.peerId.toString() })
    expect(bob.history(alice.peerId).map(m => m.body)).toEqual(['before the outage', 'sent during the outage'])
  })
})
