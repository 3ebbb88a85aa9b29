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
    expect(first).toBeGreaterThan(0)
    expect(upgrade).toBeGreaterThan(first)
    expect(later).toBeGreaterThan(upgrade)
    expect(stdout).toMatch(/stopped the relay and both nodes\s*$/)
  })
})
