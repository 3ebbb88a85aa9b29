import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { runCli, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'

describe('parley relays: reachability and relays kept in the config', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('a node without a relay says it is not reachable; a relay link added for good makes it reachable after a restart', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const link = relay.stdout().match(/^give nodes this line: parley relays add (parley-relay:\S+)$/m)?.[1]
    expect(link).toBeDefined()

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

    const added = await first.cli(['relays', 'add', link ?? ''])
    expect(added.code).toBe(0)
    expect(added.stdout).toContain(`saved relay ${relay.multiaddrs[0]}`)
    expect(added.stdout).toMatch(/restart the node/)
    const config = JSON.parse(await readFile(join(dataDir, 'config.json'), 'utf8'))
    expect(config.relays).toEqual([relay.multiaddrs[0]])
    // the rest of the file as it was
    expect(config.listen).toEqual(JSON.parse(before).listen)
    expect((await stat(join(dataDir, 'config.json'))).mode & 0o777).toBe(0o600)
    const listed = await first.cli(['relays'])
    expect(listed.stdout).toContain(`${relay.multiaddrs[0]}  saved; restart the node to use it`)
    await first.stop()

    const second = await startDaemonProcess(dataDir)
    await second.waitFor(new RegExp(`^reachable through relay ${relay.multiaddrs[0].replace(/[/.]/g, '\\$&')}$`, 'm'))
    expect((await second.cli(['status'])).stdout).toContain(`reachable through relay ${relay.multiaddrs[0]}`)
    expect((await second.cli(['relays'])).stdout).toContain(`${relay.multiaddrs[0]}  reserved`)
    await second.stop()

    // kept across restarts; removed for good by peer ID
    const removed = await runCli(['--data-dir', dataDir, 'relays', 'remove', relay.peerId])
    expect(removed.code).toBe(0)
    expect(JSON.parse(await readFile(join(dataDir, 'config.json'), 'utf8')).relays).toEqual([])
    const again = await runCli(['--data-dir', dataDir, 'relays', 'remove', relay.peerId])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/no saved relay is/)
  })

  it('--relay is not saved, and the node says so and how to keep it', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const dataDir = await tempDir()
    const node = await startDaemonProcess(dataDir, ['--relay', relay.multiaddrs[0]])
    await node.waitFor(/is not saved; `parley relays add .*` keeps it/)
    await node.waitFor(/^reachable through relay /m)
    expect(JSON.parse(await readFile(join(dataDir, 'config.json'), 'utf8')).relays).toEqual([])
    expect((await node.cli(['relays'])).stdout).toMatch(/reserved, not saved \(given with --relay/)
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
