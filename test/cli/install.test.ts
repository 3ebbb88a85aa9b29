import { execFile } from 'node:child_process'
import { copyFile, mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { ROOT } from '../fixtures/processes.js'

const run = promisify(execFile)

/** The Node.js that parley pins (the `node` package's version), which the installed command must run on. */
const PINNED = JSON.parse(await readFile(join(ROOT, 'node_modules/node/package.json'), 'utf8')).version as string

/**
 * A PATH as a user with an older system Node has it: /usr/bin/node (Node 20 on
 * this project's machines) is the `node` there, not the pinned one this test runs on.
 */
const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin'

/** Runs a command with the system PATH and no PARLEY_* settings; resolves with its exit code and output, whatever the code. */
async function runWithSystemPath (file: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const env: Record<string, string> = { PATH: SYSTEM_PATH }
  if (process.env.HOME != null) env.HOME = process.env.HOME
  try {
    const { stdout, stderr } = await run(file, args, { env, timeout: 60_000 })
    return { code: 0, stdout, stderr }
  } catch (err: any) {
    if (typeof err.code !== 'number') throw err
    return { code: err.code, stdout: err.stdout, stderr: err.stderr }
  }
}

describe('the installed parley command', () => {
  const tempDir = useTempDirs()

  it('runs on the pinned Node.js from a packed and globally installed package, whatever the system node is', async () => {
    // what npm publishes: `npm pack` of the built package (the build is npm test's, so no prepare script again)
    const packed = await tempDir()
    await run('npm', ['pack', '--ignore-scripts', '--pack-destination', packed], { cwd: ROOT, timeout: 120_000 })
    const [tarball] = (await readdir(packed)).filter(f => f.endsWith('.tgz'))
    expect(tarball).toMatch(/^parley-im-[\d.]+\.tgz$/)

    // laid out as `npm install -g --prefix <prefix>` lays it out: the package in
    // lib/node_modules/<name>, its dependencies in its own node_modules (linked
    // to this checkout's: npm would fetch the same ones, and a test must not
    // need the registry), and bin/<command> a link to the package's bin file
    const prefix = await tempDir()
    const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'))
    const installed = join(prefix, 'lib', 'node_modules', manifest.name)
    await mkdir(installed, { recursive: true })
    await run('tar', ['-xzf', join(packed, tarball), '-C', installed, '--strip-components=1'])
    await symlink(join(ROOT, 'node_modules'), join(installed, 'node_modules'), 'dir')
    await mkdir(join(prefix, 'bin'))
    expect(Object.keys(manifest.bin)).toEqual(['parley'])
    await symlink(join('..', 'lib', 'node_modules', manifest.name, manifest.bin.parley), join(prefix, 'bin', 'parley'))

    const version = await runWithSystemPath(join(prefix, 'bin', 'parley'), ['--version'])
    expect(version).toMatchObject({ code: 0, stdout: `parley ${String(manifest.version)} (Node.js v${PINNED})\n` })
    const help = await runWithSystemPath(join(prefix, 'bin', 'parley'), ['id', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^Usage: parley id/)
    expect(help.stdout).toContain('--data-dir')
  })

  it('runs from a checkout installed with `npm install -g .`: a link to the checkout, and the bin linked through it', async () => {
    const prefix = await tempDir()
    await mkdir(join(prefix, 'lib', 'node_modules'), { recursive: true })
    await symlink(ROOT, join(prefix, 'lib', 'node_modules', 'parley-im'), 'dir')
    await mkdir(join(prefix, 'bin'))
    await symlink(join('..', 'lib', 'node_modules', 'parley-im', 'parley'), join(prefix, 'bin', 'parley'))
    const version = await runWithSystemPath(join(prefix, 'bin', 'parley'), ['--version'])
    expect(version).toMatchObject({ code: 0, stdout: expect.stringContaining(`(Node.js v${PINNED})`) })
  })

  it('runs from the checkout\'s ./parley symlinked into a bin dir, on the pinned Node.js', async () => {
    const bin = await tempDir()
    await symlink(join(ROOT, 'parley'), join(bin, 'parley'))
    // a link to the link, as ~/bin/parley -> ~/src/parley/parley sometimes is
    await symlink(join(bin, 'parley'), join(bin, 'chat'))
    for (const command of ['parley', 'chat']) {
      const version = await runWithSystemPath(join(bin, command), ['-V'])
      expect(version).toMatchObject({ code: 0, stdout: expect.stringContaining(`(Node.js v${PINNED})`) })
    }
  })

  it('runs `parley node` with a young generation of 2 MB semi-spaces, every other command and a NODE_OPTIONS that sets its own with V8\'s default', async () => {
    // the launcher next to a stand-in for the pinned node that prints the arguments it is given
    const dir = await tempDir()
    await copyFile(join(ROOT, 'parley'), join(dir, 'parley'))
    await mkdir(join(dir, 'node_modules', 'node', 'bin'), { recursive: true })
    await writeFile(join(dir, 'node_modules', 'node', 'bin', 'node'), '#!/bin/sh\nprintf \'%s\\n\' "$@"\n', { mode: 0o755 })
    const argsOf = async (args: string[], env: Record<string, string> = {}): Promise<string[]> => {
      const { stdout } = await run('sh', [join(dir, 'parley'), ...args], { env: { PATH: SYSTEM_PATH, ...env } })
      return stdout.trimEnd().split('\n')
    }
    const script = join(dir, 'dist', 'bin', 'parley.js')
    const small = '--max-semi-space-size=2'
    expect(await argsOf(['node'])).toEqual([small, script, 'node'])
    expect(await argsOf(['--data-dir', '/tmp/x', 'node', '--listen', '/ip4/127.0.0.1/tcp/0'])).toEqual([small, script, '--data-dir', '/tmp/x', 'node', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(await argsOf(['--data-dir=/tmp/x', 'node'])).toEqual([small, script, '--data-dir=/tmp/x', 'node'])
    // a data dir named "node" is not the command
    expect(await argsOf(['--data-dir', 'node', 'relay'])).toEqual([script, '--data-dir', 'node', 'relay'])
    expect(await argsOf(['relay', '--listen', '/ip4/0.0.0.0/tcp/4001'])).toEqual([script, 'relay', '--listen', '/ip4/0.0.0.0/tcp/4001'])
    expect(await argsOf(['send', 'bob', 'node'])).toEqual([script, 'send', 'bob', 'node'])
    expect(await argsOf(['--version'])).toEqual([script, '--version'])
    expect(await argsOf(['node'], { NODE_OPTIONS: '--max-semi-space-size=16' })).toEqual([script, 'node'])
    expect(await argsOf(['node'], { NODE_OPTIONS: '--enable-source-maps' })).toEqual([small, script, 'node'])
  })

  it('says which Node.js it needs and exits 1 when the pinned one is missing', async () => {
    // the launcher alone, with no node_modules/node next to it or above it
    const dir = await tempDir()
    await copyFile(join(ROOT, 'parley'), join(dir, 'parley'))
    const result = await runWithSystemPath('sh', [join(dir, 'parley'), '--version'])
    expect(result.code).toBe(1)
    expect(result.stdout).toBe('')
    expect(result.stderr).toMatch(/needs Node\.js 24, which comes with it as the npm package "node"/)
    expect(result.stderr).toContain('npm install -g parley-im')
  })
})
