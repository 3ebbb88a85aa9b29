import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli, startCli } from '../fixtures/processes.js'
import type { CliProcess } from '../fixtures/processes.js'

/** A `parley node` daemon started by a test, with its data dir and identity. */
export interface DaemonProcess extends CliProcess {
  dataDir: string
  peerId: string
  api: { url: string, token: string }
  /** Runs another CLI command against this daemon. */
  cli(args: string[]): ReturnType<typeof runCli>
}

/**
 * Starts `parley node --data-dir <dir> ...args` and waits until its start-up
 * lines are out (the last one, the web app's, whole): a pipe may hand them
 * over in several chunks, so waiting on the API line alone raced the rest.
 */
export async function startDaemonProcess (dataDir: string, args: string[] = []): Promise<DaemonProcess> {
  const proc = startCli(['node', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', ...args])
  await proc.waitFor(/^web app: .*\n/m)
  const peerId = proc.stdout().match(/^peer ID: (\S+)$/m)?.[1] ?? ''
  const api = JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8'))
  return Object.assign(proc, {
    dataDir,
    peerId,
    api,
    async cli (more: string[]) { return runCli(['--data-dir', dataDir, ...more]) }
  })
}
