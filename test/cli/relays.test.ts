import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { runCli, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'

describe('parley relays: reachability, relays kept in the config and applied to the running node', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('a node without a relay says it is not reachable; a relay link added takes effect at once, is kept for the next start, and removing it takes effect at once', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const link = relay.stdout().match(/^give nodes this line: parley relays add (parley-relay:\S+)$/m)?.[1]
    expect(link).toBeDefined()
    const relayAddr = relay.multiaddrs[0]
    const circuit = `${relayAddr}/p2p-circuit`

    const dataDir = await tempDir()
    const first = await startDaemonProcess(dataDir)
    // said at start, with what to do
    await first.waitFor(/^NOT reachable from outside your LAN:\n {2}no relay configured: add one with `parley relays add/m)
    const status = await first.cli(['status'])
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(/^NOT reachable from outside your LAN:$/m)
    expect(status.stdout).toMatch(/^ {2}no relay configured: add one with `parley relays add <relay link>`/m)
    const json = JSON.parse((await first.cli(['status', '--json'])).stdout)
    expect(json.reachability).toMatchObject({ reachable: false, via: 'lan only' })

    // hostile or damaged input is refused, the file untouched
    const before = await readFile(join(dataDir, 'config.json'), 'utf8')
    const bad = await first.cli(['relays', 'add', `${link ?? ''}x!`])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/relay link is damaged/)
    expect(await readFile(join(dataDir, 'config.json'), 'utf8')).toBe(before)

    // saved, and the running node reserves on it at once: no restart
    const added = await first.cli(['relays', 'add', link ?? ''])
    expect(added.code).toBe(0)
    expect(added.stdout).toContain(`saved relay ${relayAddr}`)
    expect(added.stdout).toContain(`reserved on ${relayAddr}`)
    const config = JSON.parse(await readFile(join(dataDir, 'config.json'), 'utf8'))
    expect(config.relays).toEqual([relayAddr])
    // the rest of the file as it was
    expect(config.listen).toEqual(JSON.parse(before).listen)
    expect((await stat(join(dataDir, 'config.json'))).mode & 0o777).toBe(0o600)
    const live = JSON.parse((await first.cli(['status', '--json'])).stdout)
    expect(live.relays).toEqual([{ relay: relayAddr, reserved: true, failures: 0 }])
    expect(live.reachability).toMatchObject({ reachable: true, via: 'relay', relay: relayAddr })
    expect(live.addrs).toContain(`${circuit}/p2p/${first.peerId}`)
    expect((await first.cli(['relays'])).stdout).toContain(`${relayAddr}  reserved`)
    await first.waitFor(new RegExp(`^reachable through relay ${relayAddr.replace(/[/.]/g, '\\$&')}$`, 'm'))
    // again: nothing changes
    const twice = await first.cli(['relays', 'add', relayAddr])
    expect(twice.stdout).toContain(`already saved: ${relayAddr}`)
    expect(twice.stdout).toContain(`reserved on ${relayAddr}`)
    await first.stop()

    // kept for the next start
    const second = await startDaemonProcess(dataDir)
    await second.waitFor(new RegExp(`^reachable through relay ${relayAddr.replace(/[/.]/g, '\\$&')}$`, 'm'))
    expect((await second.cli(['relays'])).stdout).toContain(`${relayAddr}  reserved`)

    // removed by peer ID: from the file, and from the running node at once
    const removed = await second.cli(['relays', 'remove', relay.peerId])
    expect(removed.code).toBe(0)
    expect(removed.stdout).toContain(`removed relay ${relayAddr}`)
    expect(removed.stdout).toContain(`the running node no longer uses relay ${relay.peerId}`)
    expect(JSON.parse(await readFile(join(dataDir, 'config.json'), 'utf8')).relays).toEqual([])
    const after = JSON.parse((await second.cli(['status', '--json'])).stdout)
    expect(after.relays).toEqual([])
    expect(after.addrs.filter((a: string) => a.includes('/p2p-circuit'))).toEqual([])
    expect(after.reachability).toMatchObject({ reachable: false, via: 'lan only' })
    await second.waitFor(/^NOT reachable from outside your LAN:\n {2}no relay configured/m)

    const again = await second.cli(['relays', 'remove', relay.peerId])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/no saved relay is/)
  })

  it('a relay that cannot be reached is saved, and the running node says why it holds no reservation', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const addr = relay.multiaddrs[0]
    await relay.stop()
    const dataDir = await tempDir()
    // no node running: saved for its next start, and said so
    const offline = await runCli(['--data-dir', dataDir, 'relays', 'add', `/ip4/127.0.0.1/tcp/1/p2p/${relay.peerId}`])
    expect(offline.code).toBe(0)
    expect(offline.stdout).toContain('the node is not running: it uses the relay from its next start')
    const node = await startDaemonProcess(dataDir)
    await node.waitFor(/^NOT reachable from outside your LAN:\n {2}relay .* not reserved \(/m)
    // the same relay at another address: the saved one is replaced, and the running node takes the new one
    const added = await node.cli(['relays', 'add', addr])
    expect(added.code).toBe(0)
    expect(added.stdout).toContain(`saved relay ${addr} in ${join(dataDir, 'config.json')} (in place of /ip4/127.0.0.1/tcp/1/p2p/${relay.peerId})`)
    expect(added.stdout).toMatch(new RegExp(`^NOT reserved on ${addr.replace(/[/.]/g, '\\$&')} yet \\(.+\\); the node keeps trying`, 'm'))
    expect(JSON.parse((await node.cli(['status', '--json'])).stdout).relays).toEqual([{ relay: addr, reserved: false, failures: expect.any(Number) }])
  })

  it('--relay is not saved, and the node says so and how to keep it', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const dataDir = await tempDir()
    const node = await startDaemonProcess(dataDir, ['--relay', relay.multiaddrs[0]])
    await node.waitFor(/is not saved; `parley relays add .*` keeps it/)
    await node.waitFor(/^reachable through relay /m)
    expect(JSON.parse(await readFile(join(dataDir, 'config.json'), 'utf8')).relays).toEqual([])
    expect((await node.cli(['relays'])).stdout).toMatch(/reserved, not saved \(given with --relay/)
    // not saved, but the running node stops using it all the same
    const removed = await node.cli(['relays', 'remove', relay.peerId])
    expect(removed.code).toBe(0)
    expect(removed.stdout).toContain(`the running node no longer uses relay ${relay.peerId}`)
    expect(JSON.parse((await node.cli(['status', '--json'])).stdout).relays).toEqual([])
  })

  it('an unreachable relay: the node says it is not reachable, which relay and why', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const addr = relay.multiaddrs[0]
    await relay.stop()
    const node = await startDaemonProcess(await tempDir(), ['--relay', addr])
    await node.waitFor(/^NOT reachable from outside your LAN:\n {2}relay .* not reserved \(/m)
    const status = await node.cli(['status'])
    expect(status.stdout).toContain(`relay ${addr}: not reserved (`)
    expect(status.stdout).toMatch(/check the relay is up/)
  })
})
