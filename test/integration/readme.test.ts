import { execFile } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const root = join(import.meta.dirname, '..', '..')

describe('README', () => {
  it('programmatic example runs as written against the built package', async () => {
    const readme = await readFile(join(root, 'README.md'), 'utf8')
    const example = readme.match(/```js\n([\s\S]*?)```/)?.[1]
    expect(example).toContain("from 'parley'")

    // inside the package directory, so that `import … from 'parley'` resolves to
    // the package itself (its built dist/, as a user would get it)
    const file = join(root, `.readme-example-${process.pid}.mjs`)
    await writeFile(file, example ?? '')
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: root, timeout: 60_000 })
      expect(stdout).toMatch(/bob got "hello" from 12D3KooW/)
      expect(stdout).toMatch(/status: 'delivered'/)
      expect(stdout).toMatch(/path: '(direct|relayed)'/)
    } finally {
      await rm(file, { force: true })
    }
  })
})
