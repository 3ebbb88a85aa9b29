import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { CLI, NODE, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'

/** Runs `parley ...args` with `input` written to its stdin (then closed). */
async function runWithStdin (args: string[], input: Buffer): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(NODE, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  // the CLI stops reading a too-large body early: the rest of the write fails, as in a shell pipe
  child.stdin.on('error', () => {})
  child.stdin.end(input)
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  return { code, stdout, stderr }
}

describe('parley send with the body on stdin', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('sends a 20 KiB body byte-exact, refuses 1 MiB with a clear message and queues nothing', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const bob = await startDaemonProcess(await tempDir())
    await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])

    // emoji, CJK, a CR, inner and leading newlines, trailing spaces: all kept; only the final newline goes
    const line = 'héllo 😀 你好 \r\n  indented\t tab  \n'
    let body = '\n'
    while (Buffer.byteLength(body + line) <= 20 * 1024) body += line
    body += 'end  '
    const sent = await runWithStdin(['--data-dir', alice.dataDir, 'send', 'bob', '-', '--json', '--wait', '60'], Buffer.from(body + '\n'))
    expect(sent.stderr).toBe('')
    expect(sent.code).toBe(0)
    const { id } = JSON.parse(sent.stdout)
    const atBob = JSON.parse((await bob.cli(['history', alice.peerId, '--json'])).stdout)
    expect(atBob).toHaveLength(1)
    expect(atBob[0].id).toBe(id)
    expect(Buffer.from(atBob[0].body, 'utf8').equals(Buffer.from(body, 'utf8'))).toBe(true)

    // no argument, stdin a pipe: read from stdin too
    const piped = await runWithStdin(['--data-dir', alice.dataDir, 'send', 'bob', '--json', '--wait', '60'], Buffer.from('piped 🎉\n'))
    expect(piped.code).toBe(0)

    const huge = await runWithStdin(['--data-dir', alice.dataDir, 'send', 'bob', '-'], Buffer.alloc(1024 * 1024, 'a'))
    expect(huge.code).toBe(1)
    expect(huge.stderr).toMatch(/over the 32768-byte limit/)
    expect(huge.stderr).toMatch(/the message is (over )?\d+ bytes/)
    expect(huge.stderr).toMatch(/split it/i)
    expect(huge.stderr).toContain('file transfer is not available yet')
    expect(huge.stderr).not.toMatch(/\n\s+at /)

    const outbox = JSON.parse((await alice.cli(['status', '--json'])).stdout).outbox
    expect(outbox).toBe(0)
    const atAlice = JSON.parse((await alice.cli(['history', 'bob', '--json'])).stdout)
    expect(atAlice.map((m: any) => m.body)).toEqual([body, 'piped 🎉'])
  })
})
