import { execFile } from 'node:child_process'
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { ROOT } from '../fixtures/processes.js'

describe('README', () => {
  const tempDir = useTempDirs()

  it('programmatic example runs as written against the built package', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
    const example = readme.match(/```js\n([\s\S]*?)```/)?.[1]
    expect(example).toContain("from 'parley-im'")

    // in a directory of its own, where `import … from 'parley-im'` finds the
    // package as an installed dependency would be (node_modules/parley-im, a link
    // to this package: its package.json and built dist/, as a user would get them)
    const dir = await tempDir()
    await mkdir(join(dir, 'node_modules'))
    await symlink(ROOT, join(dir, 'node_modules', 'parley-im'), 'dir')
    const file = join(dir, 'readme-example.mjs')
    await writeFile(file, example ?? '')
    const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: dir, timeout: 60_000 })
    expect(stdout).toMatch(/bob got "hello" from 12D3KooW/)
    expect(stdout).toMatch(/status: 'delivered'/)
    expect(stdout).toMatch(/path: '(direct|relayed)'/)
  })
})
