import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadDaemonConfig, toNodeConfig } from '../../daemon/config.js'
import { useTempDirs } from '../fixtures/dirs.js'

describe('the daemon config', () => {
  const tempDir = useTempDirs()

  it('passes the policy and connection limits of config.json to the node', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'config.json'), JSON.stringify({ limits: { maxStoreBytes: 1_000_000, requestMessages: 10 }, connectionLimits: { maxInboundPerIp: 4 } }))
    const node = toNodeConfig(dir, await loadDaemonConfig(dir, {}, {}))
    expect(node.limits).toEqual({ maxStoreBytes: 1_000_000, requestMessages: 10 })
    expect(node.connectionLimits).toEqual({ maxInboundPerIp: 4 })
  })

  it('names an unknown or invalid limit and where it came from', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'config.json'), JSON.stringify({ limits: { maxStoreGigabytes: 1 } }))
    await expect(loadDaemonConfig(dir, {}, {})).rejects.toThrow(/limits.*maxStoreGigabytes/)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ connectionLimits: { maxInboundPerIp: -1 } }))
    await expect(loadDaemonConfig(dir, {}, {})).rejects.toThrow(/connectionLimits\.maxInboundPerIp/)
  })
})
