/**
 * `parley open` against a real daemon process: the one-time login URL it
 * prints (or hands to the browser) logs a browser in once and never again.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { runCli, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'

/** GET `url` as a browser would (no redirect followed): status and Set-Cookie. */
async function get (url: string, cookie?: string): Promise<{ status: number, setCookie: string[], location?: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { agent: false, headers: cookie == null ? {} : { cookie } }, res => {
      res.resume().on('end', () => { resolve({ status: res.statusCode ?? 0, setCookie: res.headers['set-cookie'] ?? [], location: res.headers.location }) })
    }).on('error', reject).end()
  })
}

describe('parley open', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('tells at start how to open the app, without a secret; --print-url prints a URL that logs in once', async () => {
    const daemon = await startDaemonProcess(await tempDir())
    expect(daemon.stdout()).toContain(`web app: run \`parley --data-dir ${daemon.dataDir} open\``)
    expect(daemon.stdout()).not.toContain('token=')
    const printed = await daemon.cli(['open', '--print-url'])
    expect(printed.code).toBe(0)
    // the URL and nothing else on stdout: a script takes it as it is
    const url = printed.stdout.trim()
    expect(printed.stdout).toBe(url + '\n')
    expect(url).toMatch(new RegExp(`^${daemon.api.url.replaceAll('.', '\\.')}/login\\?token=[A-Za-z0-9_-]{43}$`))
    const first = await get(url)
    expect(first.status).toBe(303)
    expect(first.location).toBe('/')
    const cookie = first.setCookie[0].split(';')[0]
    expect(cookie).toMatch(/^parley_session=/)
    expect((await get(`${daemon.api.url}/v1/id`, cookie)).status).toBe(200)
    const second = await get(url)
    expect(second.status).toBe(401)
    expect(second.setCookie).toEqual([])
  })

  it('hands the URL to the browser command as one argument; without a browser, prints it and says so', async () => {
    const dir = await tempDir()
    const daemon = await startDaemonProcess(await tempDir())
    const browser = join(dir, 'browser.sh')
    const record = join(dir, 'opened.txt')
    await writeFile(browser, `#!/bin/sh\nprintf '%s\\n' "$#" "$1" > '${record}'\n`)
    await chmod(browser, 0o755)
    const opened = await runCli(['--data-dir', daemon.dataDir, 'open'], { env: { PARLEY_BROWSER: browser } })
    expect(opened.code).toBe(0)
    expect(opened.stdout).toContain('opened the web app')
    expect(opened.stdout).not.toContain('token=')
    const [count, url] = (await readFile(record, 'utf8')).split('\n')
    expect(count).toBe('1')
    expect(url).toMatch(/\/login\?token=[A-Za-z0-9_-]{43}$/)
    expect((await get(url)).status).toBe(303)

    const failed = await runCli(['--data-dir', daemon.dataDir, 'open'], { env: { PARLEY_BROWSER: join(dir, 'no-such-browser') } })
    expect(failed.code).toBe(0)
    expect(failed.stderr).toContain('could not open a browser')
    const fallback = failed.stdout.trim()
    expect(fallback).toMatch(/\/login\?token=[A-Za-z0-9_-]{43}$/)
    expect((await get(fallback)).status).toBe(303)
  })
})
