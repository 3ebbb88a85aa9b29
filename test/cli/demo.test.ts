import { describe, expect, it } from 'vitest'
import { ROOT, NODE } from '../fixtures/processes.js'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'

describe('npm run demo', () => {
  it('shows a conversation that starts relayed, is upgraded to direct, and stops everything', async () => {
    const { stdout } = await promisify(execFile)(NODE, [join(ROOT, 'dist', 'demo.js')], { cwd: ROOT, timeout: 90_000 })
    const first = stdout.indexOf('✓ delivered (relayed)')
    const upgrade = stdout.indexOf('path now direct (webrtc)')
    const later = stdout.lastIndexOf('✓ delivered (direct)')
    // what the demo printed, if it is not what a user should see
    expect(first, stdout).toBeGreaterThan(0)
    expect(upgrade, stdout).toBeGreaterThan(first)
    expect(later, stdout).toBeGreaterThan(upgrade)
    expect(stdout).toMatch(/stopped the relay and both nodes\s*$/)
  })

  it('exits once it has stopped everything, even when the nodes stop while their WebRTC upgrade is under way', async () => {
    // no wait for the direct path: the nodes stop with the upgrade in flight,
    // whose peer connection kept node-datachannel's threads, and the process, alive
    const { stdout } = await promisify(execFile)(NODE, [join(ROOT, 'dist', 'demo.js')], { cwd: ROOT, timeout: 60_000, env: { ...process.env, PARLEY_DEMO_DIRECT_WITHIN: '1' } })
    expect(stdout).toContain('no direct path within')
    expect(stdout).toContain('✓ delivered (relayed)')
    expect(stdout).toMatch(/stopped the relay and both nodes\s*$/)
  })
})
