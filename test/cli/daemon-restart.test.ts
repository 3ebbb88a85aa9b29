import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { CLI, NODE, freePorts, runCli, startCli, useProcesses } from '../fixtures/processes.js'
import { openTerminal } from '../fixtures/tmux.js'
import { startDaemonProcess } from './daemon.js'
import type { Server } from 'node:net'

/** Any line of a stack trace, as Node prints them. */
const STACK_LINE = /^\s+at \S/m

describe('the daemon and its clients', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('says plainly that a listen port or the API port is in use, and exits 1', async () => {
    const busy = await new Promise<Server>((resolve, reject) => {
      const server = createServer()
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => { resolve(server) })
    })
    try {
      const port = (busy.address() as { port: number }).port
      const taken = await runCli(['node', '--data-dir', await tempDir(), '--listen', `/ip4/127.0.0.1/tcp/${port}`])
      expect(taken.code).toBe(1)
      expect(taken.stderr.trim()).toBe(`parley: port ${port} is already in use (another parley node?): choose another with --listen /ip4/127.0.0.1/tcp/<port>, or stop the other one (listen address /ip4/127.0.0.1/tcp/${port})`)
      expect(taken.stdout).toBe('')
      const api = await runCli(['node', '--data-dir', await tempDir(), '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', String(port)])
      expect(api.code).toBe(1)
      expect(api.stderr.trim()).toBe(`parley: the API port ${port} on 127.0.0.1 is already in use (another parley node?): choose another with --api-port <n> (0 for any), or stop the other one`)
    } finally {
      await new Promise(resolve => busy.close(resolve))
    }
  })

  it('runs on with an unreachable relay, printing no libp2p internals', async () => {
    const [nobody] = await freePorts(1)
    const daemon = await startDaemonProcess(await tempDir(), ['--relay', `/ip4/127.0.0.1/tcp/${nobody}/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN`])
    const status = await daemon.cli(['status', '--json'])
    expect(status.code).toBe(0)
    expect(JSON.parse(status.stdout).relays).toEqual([expect.objectContaining({ reserved: false })])
    expect(daemon.child.exitCode).toBe(null)
    expect(daemon.stderr()).not.toMatch(STACK_LINE)
    expect(daemon.stderr()).not.toMatch(/faultTolerance|NO_FATAL/)
  })

  it('keeps watch running across a daemon restart, and shows a message sent after it', async () => {
    const [bobPort] = await freePorts(1)
    const bobDir = await tempDir()
    const bobArgs = ['--listen', `/ip4/127.0.0.1/tcp/${bobPort}`]
    const alice = await startDaemonProcess(await tempDir())
    let bob = await startDaemonProcess(bobDir, bobArgs)
    await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])

    const json = startCli(['--data-dir', bobDir, 'watch', '--json'])
    const human = startCli(['--data-dir', bobDir, 'watch'])
    await json.waitFor(/"event":"ready"/)
    await human.waitFor(/^watching /m)

    await bob.stop()
    await json.waitFor(/"event":"disconnected"/)
    await human.waitFor(/^-- daemon stopped; waiting for it to come back…$/m)

    bob = await startDaemonProcess(bobDir, bobArgs)
    await json.waitFor(/"event":"reconnected"/)
    await human.waitFor(/^-- reconnected/m)

    const sent = await alice.cli(['send', 'bob', 'after the restart', '--wait', '60'])
    expect(sent.code).toBe(0)
    await json.waitFor(/"body":"after the restart"/)
    await human.waitFor(/: after the restart$/m)

    const lines = json.stdout().trim().split('\n').map(line => JSON.parse(line))
    expect(lines.map(l => l.event).filter(e => e !== 'path' && e !== 'status')).toEqual(['ready', 'disconnected', 'reconnected', 'message'])
    expect(lines.find(l => l.event === 'reconnected')).toEqual({ event: 'reconnected', peerId: bob.peerId })
    expect(human.stdout().match(/after the restart/g)).toHaveLength(1)
    expect(json.child.exitCode).toBe(null)
    expect(human.child.exitCode).toBe(null)
    expect(json.stderr() + human.stderr()).toBe('')
  })

  it('keeps chat going across a daemon restart: nothing missed, nothing shown twice, sending works again', async () => {
    const [alicePort] = await freePorts(1)
    const aliceDir = await tempDir()
    const aliceArgs = ['--listen', `/ip4/127.0.0.1/tcp/${alicePort}`]
    let alice = await startDaemonProcess(aliceDir, aliceArgs)
    const bob = await startDaemonProcess(await tempDir())
    await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])
    await bob.cli(['contacts', 'add', 'alice', (await alice.cli(['invite'])).stdout.trim()])

    const terminal = await openTerminal(`${NODE} ${CLI} --data-dir ${aliceDir} chat bob`, { columns: 160, rows: 40 })
    await terminal.shows(/\[bob · [^\]]+\] >/)

    await alice.stop()
    await terminal.shows(/-- daemon stopped; waiting for it to come back…/)
    // written while alice's node is down: bob's node keeps it and delivers it once they are connected again
    expect((await bob.cli(['send', 'alice', 'while you were away', '--wait', '0'])).code).toBe(2)

    alice = await startDaemonProcess(aliceDir, aliceArgs)
    await terminal.shows(/-- reconnected/)
    await terminal.keys('back again', 'Enter')
    await terminal.shows(/✓ delivered \((direct|relayed)\): back again/)
    const screen = await terminal.shows(/bob: while you were away/)
    expect(screen.match(/bob: while you were away/g)).toHaveLength(1)
    expect(screen.match(/daemon stopped/g)).toHaveLength(1)
    expect(JSON.parse((await bob.cli(['history', 'alice', '--json'])).stdout).map((m: any) => m.body)).toEqual(['while you were away', 'back again'])
  })
})
