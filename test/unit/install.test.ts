// The README promises a quiet `npm ci` on an old system Node: npm warns
// EBADENGINE for every installed package whose `engines.node` the running Node
// does not satisfy, so the lock file must hold none that Node 20 fails.
import { readFileSync } from 'node:fs'
import semver from 'semver'
import { describe, expect, it } from 'vitest'

// the oldest system Node the README's install is quiet on (some build tools
// and @noble/* ask for 20.19)
const OLDEST_SYSTEM_NODE = '20.19.4'

interface LockedPackage { engines?: { node?: string } | string[], optional?: boolean, os?: string[], cpu?: string[] }

describe('install on an old system Node', () => {
  it('every locked package accepts Node 20, so npm ci prints no EBADENGINE', () => {
    const lock = JSON.parse(readFileSync(new URL('../../package-lock.json', import.meta.url), 'utf8')) as { packages: Record<string, LockedPackage> }
    const refusing = Object.entries(lock.packages)
      .filter(([path, pkg]) => path !== '' && !Array.isArray(pkg.engines) && pkg.engines?.node != null)
      // platform-specific optional binaries for other systems are never installed here
      .filter(([, pkg]) => !(pkg.optional === true && (pkg.os != null || pkg.cpu != null)))
      .filter(([, pkg]) => !semver.satisfies(OLDEST_SYSTEM_NODE, (pkg.engines as { node: string }).node))
      .map(([path, pkg]) => `${path} wants node ${(pkg.engines as { node: string }).node}`)
    expect(refusing).toEqual([])
  })

  it('the check itself sees a package that refuses Node 20', () => {
    expect(semver.satisfies(OLDEST_SYSTEM_NODE, '>=22')).toBe(false)
    expect(semver.satisfies(OLDEST_SYSTEM_NODE, '^22 || ^24 || >=26')).toBe(false)
  })
})
