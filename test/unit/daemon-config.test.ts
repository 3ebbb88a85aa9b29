import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../common/config.js'
import { daemonConfigSchema, loadDaemonConfig, toNodeConfig } from '../../daemon/config.js'
import { resolveNodeConfig } from '../../node/config.js'
import { useTempDirs } from '../fixtures/dirs.js'

/** The message `check` throws with, or `accepted`. */
function problem (check: () => unknown): string {
  try {
    check()
  } catch (err: any) {
    return err.message
  }
  return 'accepted'
}

describe('the daemon config', () => {
  const tempDir = useTempDirs()

  it('passes the policy and connection limits of config.json to the node', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'config.json'), JSON.stringify({ limits: { maxStoreBytes: 1_000_000, requestMessages: 10 }, connectionLimits: { maxInboundPerIp: 4 } }))
    const node = toNodeConfig(dir, await loadDaemonConfig(dir, {}, {}))
    expect(node.limits).toEqual({ maxStoreBytes: 1_000_000, requestMessages: 10 })
    expect(node.connectionLimits).toEqual({ maxInboundPerIp: 4 })
  })

  it('passes the files section of config.json to the node, and names a bad key', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'config.json'), JSON.stringify({ files: { autoAcceptSize: 1024, quotaBytes: 1_000_000 } }))
    expect(toNodeConfig(dir, await loadDaemonConfig(dir, {}, {})).files).toEqual({ autoAcceptSize: 1024, quotaBytes: 1_000_000 })
    await writeFile(join(dir, 'config.json'), JSON.stringify({ files: { quota: 1 } }))
    await expect(loadDaemonConfig(dir, {}, {})).rejects.toThrow(/files/)
  })

  it('names an unknown or invalid limit and where it came from', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'config.json'), JSON.stringify({ limits: { maxStoreGigabytes: 1 } }))
    await expect(loadDaemonConfig(dir, {}, {})).rejects.toThrow(/limits.*maxStoreGigabytes/)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ connectionLimits: { maxInboundPerIp: -1 } }))
    await expect(loadDaemonConfig(dir, {}, {})).rejects.toThrow(/connectionLimits\.maxInboundPerIp/)
  })

  it('checks each of its node keys with the node\'s own rules, and takes no node key a daemon has no use for', () => {
    for (const values of [
      { relays: ['/ip4/127.0.0.1/tcp/4001'] },
      { heartbeatInterval: -5 },
      { relayHeartbeatInterval: -5 },
      { limits: { strangerBurst: 0 } },
      { connectionLimits: { idleTimeout: 0.5 } },
      { iceBindAddress: 'localhost' },
      { dhtProtocol: ' /kad' }
    ]) {
      const fromDaemon = problem(() => parseConfig(daemonConfigSchema, [{ source: 'x', values }]))
      expect(fromDaemon).not.toBe('accepted')
      expect(fromDaemon).toBe(problem(() => resolveNodeConfig(values)).replace('createNode options', 'x'))
    }
    expect(problem(() => parseConfig(daemonConfigSchema, [{ source: 'x', values: { sendTimeout: 1_000 } }]))).toMatch(/^sendTimeout: unknown key/)
    // the node fills in the defaults; the daemon only its API port
    expect(parseConfig(daemonConfigSchema, [{ source: 'x', values: {} }])).toEqual({ apiPort: 0 })
  })
})

describe('the message expiry', () => {
  const tempDir = useTempDirs()

  it('is a week by default, set in ms by createNode, config.json or PARLEY_MESSAGE_EXPIRY, and checked as the node checks it', async () => {
    expect(resolveNodeConfig().messageExpiry).toBe(7 * 24 * 60 * 60_000)
    expect(resolveNodeConfig({ messageExpiry: 60_000 }).messageExpiry).toBe(60_000)
    expect(problem(() => resolveNodeConfig({ messageExpiry: 0 }))).toMatch(/messageExpiry: must be a positive number of milliseconds/)

    const dir = await tempDir()
    await writeFile(join(dir, 'config.json'), JSON.stringify({ messageExpiry: 86_400_000 }))
    expect(toNodeConfig(dir, await loadDaemonConfig(dir, {}, {})).messageExpiry).toBe(86_400_000)
    expect(toNodeConfig(dir, await loadDaemonConfig(dir, {}, { PARLEY_MESSAGE_EXPIRY: '3600000' })).messageExpiry).toBe(3_600_000)
    await expect(loadDaemonConfig(dir, {}, { PARLEY_MESSAGE_EXPIRY: '-1' })).rejects.toThrow(/messageExpiry.*PARLEY_MESSAGE_EXPIRY|PARLEY_MESSAGE_EXPIRY.*messageExpiry/)
  })
})
