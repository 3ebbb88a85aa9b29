import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { nextMessages, reserved, until, useNetwork } from '../fixtures/network.js'
import type { ParleyNode } from '../../index.js'
import type { ChildProcess } from 'node:child_process'

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'bin', 'parley.js')

async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

describe('a relay restart', () => {
  const net = useNetwork()
  const tempDir = useTempDirs()
  const children: ChildProcess[] = []
  afterEach(() => { for (const c of children.splice(0)) c.kill('SIGKILL') })

  /** Starts `parley relay` and resolves with its first /p2p/ address. */
  async function startRelay (port: number, dataDir: string): Promise<{ child: ChildProcess, addr: string }> {
    const child = spawn(process.execPath, [CLI, 'relay', '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    for await (const line of createInterface({ input: child.stdout })) {
      const addr = line.trim()
      if (addr.startsWith('/ip4/127.0.0.1/') && addr.includes('/p2p/')) return { child, addr }
    }
    throw new Error('the relay exited before printing its address')
  }

  const holds = (node: ParleyNode): boolean => node.status().relays.every(r => r.reserved)

  it('is healed by the nodes themselves, and a message sent during the outage arrives after it', async () => {
    const port = await freePort()
    const relayDir = await tempDir()
    let relay = await startRelay(port, relayDir)
    // relayed-only: no listener of their own, no WebRTC; the relay is the only way between them
    const config = { listen: [], relays: [relay.addr], retry: { initialDelay: 200, maxDelay: 2_000 } }
    const alice = await net.node(config)
    const bob = await net.node(config)
    await Promise.all([reserved(alice), reserved(bob)])
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    const before = nextMessages(bob, 1)
    expect((await alice.send(bob.peerId, 'before the outage')).path).toBe('relayed')
    await before

    relay.child.kill('SIGKILL')
    await once(relay.child, 'exit')
    await until(() => !holds(alice) && !holds(bob), alice.libp2p, 'self:peer:update')

    const during = nextMessages(bob, 1)
    const id = alice.queue(bob.peerId, 'sent during the outage')
    expect(alice.getMessage(id)?.status).not.toBe('delivered')

    // same identity, same port: the address users configured stays valid
    const restartedAt = Date.now()
    relay = await startRelay(port, relayDir)
    await Promise.all([
      until(() => holds(alice), alice.libp2p, 'self:peer:update'),
      until(() => holds(bob), bob.libp2p, 'self:peer:update')
    ])
    const recoveryMs = Date.now() - restartedAt
    console.info(`both nodes re-reserved ${recoveryMs} ms after the relay restarted`)

    expect((await during)[0]).toMatchObject({ body: 'sent during the outage', path: 'relayed', from: alice.peerId.toString() })
    expect(bob.history(alice.peerId).map(m => m.body)).toEqual(['before the outage', 'sent during the outage'])
  })
})
