/**
 * Chromium for the browser tests: Debian's `chromium` package driven by
 * playwright-core (browsers cannot be downloaded here), and the web app
 * opened logged in with the one-time login link of `parley open --print-url`.
 */
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import type { DaemonProcess } from '../cli/daemon.js'

/** Where Chromium is: PARLEY_CHROMIUM, else Debian's. */
export const CHROMIUM = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium'

/**
 * Launches Chromium headless with a fresh profile (playwright makes one per
 * launch), nothing it would fetch on its own, and `evil.test` resolving to
 * 127.0.0.1: a DNS-rebinding page's name for the daemon.
 */
export async function launchChromium (): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium fonts-noto-cjk fonts-noto-color-emoji (as .ci/run does), or set PARLEY_CHROMIUM`)
  return await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--host-resolver-rules=MAP evil.test 127.0.0.1'
    ]
  })
}

/** A one-time login URL, from `parley open --print-url` as a user would get it. */
export async function loginUrl (daemon: DaemonProcess): Promise<string> {
  const opened = await daemon.cli(['open', '--print-url'])
  if (opened.code !== 0) throw new Error(`parley open --print-url: ${opened.code} ${opened.stderr}`)
  return opened.stdout.trim()
}

export interface AppPage {
  context: BrowserContext
  page: Page
  /** Console errors and CSP violations the page reported. */
  problems: string[]
}

/** A new browser profile (context) with the app open and logged in. */
export async function openApp (browser: Browser, daemon: DaemonProcess, options: { colorScheme?: 'light' | 'dark', width?: number, height?: number } = {}): Promise<AppPage> {
  const context = await browser.newContext({
    viewport: { width: options.width ?? 1100, height: options.height ?? 720 },
    colorScheme: options.colorScheme ?? 'light',
    locale: 'en-GB',
    timezoneId: 'UTC'
  })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('console', m => { if (m.type() === 'error') problems.push(m.text()) })
  page.on('pageerror', e => { problems.push(e.message) })
  const response = await page.goto(await loginUrl(daemon))
  if (response?.status() !== 200) throw new Error(`the login link answered ${response?.status()}`)
  await page.getByText('live', { exact: true }).waitFor()
  return { context, page, problems }
}
