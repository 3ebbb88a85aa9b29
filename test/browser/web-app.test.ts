/**
 * The web app in a real Chromium against real `parley node` daemons and a
 * relay, driven the way a user (or a screen reader) finds things: by role and
 * label. Alice adds Bob from his invite link and writes to him; it is marked
 * delivered, and shows up live in Bob's page, counted unread first; three
 * people talk in a group through their pages. Then the defences: a page
 * reached under a foreign Host name is refused, and so is a cross-origin POST
 * carrying the session cookie. The screenshots in the README come from here.
 */
import { createServer } from 'node:http'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { ROOT, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from '../cli/daemon.js'
import { launchChromium, openApp } from './browser.js'
import type { DaemonProcess } from '../cli/daemon.js'
import type { Browser, Page } from 'playwright-core'
import type { AddressInfo } from 'node:net'

const SHOTS = join(ROOT, 'docs/screenshots')
/** What the pages are waited on for: long, since five processes share two cores. */
const SEEN = { timeout: 90_000 }

/** Both themes of the page as it is, into docs/screenshots/<name>-light.png and -dark.png. */
async function screenshots (page: Page, name: string): Promise<void> {
  await mkdir(SHOTS, { recursive: true })
  const backgrounds: string[] = []
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme })
    backgrounds.push(await page.evaluate(() => getComputedStyle(document.body).backgroundColor))
    await page.screenshot({ path: join(SHOTS, `${name}-${colorScheme}.png`) })
  }
  await page.emulateMedia({ colorScheme: 'light' })
  // the dark theme is one: the page's background follows the system's choice
  expect(backgrounds[0]).not.toBe(backgrounds[1])
}

async function api (daemon: DaemonProcess, route: string): Promise<any> {
  const response = await fetch(`${daemon.api.url}${route}`, { headers: { authorization: `Bearer ${daemon.api.token}` } })
  return response.json()
}

/** A conversation's entry in the list: the item holding the link named after it. */
function entryOf (page: Page, name: string) {
  const list = page.getByRole('navigation', { name: 'Conversations' })
  return list.getByRole('listitem').filter({ has: page.getByRole('link', { name, exact: true }) })
}

/** A message in the open conversation. */
function messageIn (page: Page, text: string) {
  return page.getByRole('log').getByRole('listitem').filter({ hasText: text })
}

async function send (page: Page, text: string): Promise<void> {
  const box = page.getByRole('textbox', { name: 'Message' })
  await box.fill(text)
  await box.press('Enter')
}

describe('the web app in Chromium', () => {
  const tempDir = useTempDirs()
  useProcesses()
  let browser: Browser | undefined
  afterEach(async () => { await browser?.close(); browser = undefined })

  it('adds a contact from an invite, sends (delivered), receives live with an unread count; accepts a message request; a group of three talks through the pages', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const relayArgs = ['--relay', relay.multiaddrs[0]]
    const [alice, bob, carol] = await Promise.all([
      startDaemonProcess(await tempDir(), relayArgs),
      startDaemonProcess(await tempDir(), relayArgs),
      startDaemonProcess(await tempDir(), relayArgs)
    ])
    const invite = async (d: DaemonProcess): Promise<string> => (await d.cli(['invite'])).stdout.trim()
    browser = await launchChromium()
    const a = await openApp(browser, alice)
    const b = await openApp(browser, bob)

    // Alice adds Bob from his invite link, Bob adds Alice from hers
    for (const [who, page, other] of [['bob', a.page, bob], ['alice', b.page, alice]] as const) {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Contacts' }).click()
      await page.getByRole('textbox', { name: 'Invite link' }).fill(await invite(other))
      await page.getByRole('textbox', { name: 'Name' }).fill(who)
      await page.getByRole('button', { name: 'Add contact' }).click()
      await page.getByRole('status').filter({ hasText: `Added ${who}.` }).waitFor(SEEN)
    }
    await screenshots(a.page, 'contacts')

    // Bob's page stays on the list; Alice opens Bob's conversation and writes, in CJK and emoji
    await b.page.getByRole('link', { name: 'parley' }).click()
    await a.page.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: 'bob', exact: true }).click()
    await a.page.getByRole('heading', { name: 'bob' }).waitFor()
    const hello = 'こんにちは Bob 你好 👋🎉 see https://example.org/x'
    await send(a.page, hello)
    await messageIn(a.page, hello).filter({ hasText: 'delivered' }).waitFor(SEEN)
    expect(await a.page.getByRole('textbox', { name: 'Message' }).inputValue()).toBe('')
    // the link in it is a safe link, the rest text
    const link = messageIn(a.page, hello).getByRole('link', { name: 'https://example.org/x' })
    expect(await link.getAttribute('rel')).toBe('noopener noreferrer')

    // live in Bob's page: the unread count first, then the message in the conversation
    await entryOf(b.page, 'alice').getByText('1 unread').waitFor(SEEN)
    // a body is text, never HTML, and only http(s) addresses become links
    const hostile = '<img src=x onerror="window.pwned=1"><b>not bold</b> javascript:alert(1)'
    await send(a.page, hostile)
    await messageIn(a.page, 'not bold').filter({ hasText: 'delivered' }).waitFor(SEEN)
    await entryOf(b.page, 'alice').getByText('2 unread').waitFor(SEEN)
    expect(await entryOf(b.page, 'alice').textContent()).toContain('<b>not bold</b>')
    await entryOf(b.page, 'alice').getByRole('link', { name: 'alice', exact: true }).click()
    await messageIn(b.page, hello).waitFor(SEEN)
    expect(await messageIn(b.page, 'not bold').locator('p').innerText()).toBe(hostile)
    expect(await b.page.getByRole('log').locator('img, b, script').count()).toBe(0)
    expect(await messageIn(b.page, 'not bold').getByRole('link').count()).toBe(0)
    expect(await b.page.evaluate(() => (window as any).pwned)).toBeUndefined()
    await entryOf(b.page, 'alice').getByText('2 unread').waitFor({ state: 'detached', ...SEEN })
    // Shift+Enter is a new line, Enter sends; the reply arrives live in Alice's open conversation
    const box = b.page.getByRole('textbox', { name: 'Message' })
    await box.fill('first line')
    await box.press('Shift+Enter')
    await box.pressSequentially('second line 🙂')
    await box.press('Enter')
    await messageIn(b.page, 'second line').filter({ hasText: 'delivered' }).waitFor(SEEN)
    expect(await messageIn(a.page, 'second line').locator('p').innerText(SEEN)).toBe('first line\nsecond line 🙂')
    await screenshots(a.page, 'conversation')

    // a stranger writes: Carol (from the command line) to Alice, who has not added
    // her; it waits in Alice's page as a message request, which she accepts, naming her
    await carol.cli(['contacts', 'add', 'alice', await invite(alice)])
    await carol.cli(['contacts', 'add', 'bob', await invite(bob)])
    await bob.cli(['contacts', 'add', 'carol', await invite(carol)])
    expect((await carol.cli(['send', 'alice', 'hello alice, carol here'])).code).toBe(0)
    const request = a.page.getByRole('navigation', { name: 'Conversations' }).getByRole('listitem').filter({ hasText: 'hello alice, carol here' })
    await request.getByText('request', { exact: true }).waitFor(SEEN)
    await request.getByRole('link').click()
    await messageIn(a.page, 'hello alice, carol here').waitFor(SEEN)
    await a.page.getByRole('textbox', { name: 'Name them' }).fill('carol')
    await a.page.getByRole('button', { name: 'Accept' }).click()
    await a.page.getByRole('heading', { name: 'carol' }).waitFor(SEEN)
    expect((await api(alice, '/v1/contacts')).map((x: any) => x.name).sort()).toEqual(['bob', 'carol'])

    // a group of three, made in Alice's page
    const c = await openApp(browser, carol)
    await a.page.getByRole('link', { name: 'New group' }).click()
    await a.page.getByRole('textbox', { name: 'Group name' }).fill('trip')
    await a.page.getByRole('checkbox', { name: 'bob' }).check()
    await a.page.getByRole('checkbox', { name: 'carol' }).check()
    await a.page.getByRole('button', { name: 'Create group' }).click()
    await a.page.getByRole('heading', { name: 'trip' }).waitFor(SEEN)
    await send(a.page, 'train at 9 🚆, 駅で会いましょう')
    await messageIn(a.page, 'train at 9').filter({ hasText: 'delivered to all 2' }).waitFor(SEEN)
    for (const page of [b.page, c.page]) {
      await entryOf(page, 'trip').getByText('1 unread').waitFor(SEEN)
      await entryOf(page, 'trip').getByRole('link', { name: 'trip', exact: true }).click()
      await messageIn(page, 'train at 9').filter({ hasText: 'alice' }).waitFor(SEEN)
    }
    await send(b.page, 'bob here: ok')
    await send(c.page, 'carol: 好的 👍')
    for (const page of [a.page, b.page, c.page]) {
      await messageIn(page, 'bob here: ok').waitFor(SEEN)
      await messageIn(page, 'carol: 好的 👍').waitFor(SEEN)
    }
    await a.page.getByText('Members (3)').click()
    await screenshots(a.page, 'group')

    // the invite as a link and a QR code; the status page
    await a.page.getByRole('link', { name: 'Invite' }).click()
    expect(await a.page.getByRole('textbox', { name: 'Invite link' }).inputValue()).toBe(await invite(alice))
    await a.page.getByRole('img', { name: 'QR code of your invite link' }).waitFor()
    await screenshots(a.page, 'invite')
    await a.page.getByRole('link', { name: 'Status' }).click()
    await a.page.getByText(alice.peerId, { exact: true }).waitFor(SEEN)
    await a.page.getByRole('cell', { name: relay.peerId }).first().waitFor(SEEN)
    await screenshots(a.page, 'status')

    // a narrow window: one column, the conversation with a way back
    await b.page.setViewportSize({ width: 360, height: 720 })
    await b.page.getByRole('link', { name: 'Back to conversations' }).click()
    await entryOf(b.page, 'alice').getByRole('link', { name: 'alice', exact: true }).click()
    await b.page.getByRole('heading', { name: 'alice' }).waitFor()
    expect(await b.page.getByRole('navigation', { name: 'Conversations' }).isVisible()).toBe(false)
    await screenshots(b.page, 'narrow')

    // no CSP violation or script error on any page
    expect([...a.problems, ...b.problems, ...c.problems]).toEqual([])
  })

  it('refuses a foreign Host name, and a cross-origin POST that carries the cookie; keeps a chosen theme; renames, blocks, removes a contact; says to run `parley open` without a session', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const bobPeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    expect((await alice.cli(['contacts', 'add', 'bob', bobPeer])).code).toBe(0)
    browser = await launchChromium()
    const a = await openApp(browser, alice)
    const port = new URL(alice.api.url).port

    // DNS rebinding: evil.test resolves to 127.0.0.1 (--host-resolver-rules), the daemon refuses the name
    const rebound = await a.page.goto(`http://evil.test:${port}/`)
    expect(rebound?.status()).toBe(403)
    expect(await a.page.getByText('parley', { exact: true }).count()).toBe(0)

    // a page of another origin on the same site (127.0.0.1, another port): the
    // browser sends the SameSite=Strict cookie, the daemon refuses the Origin
    const evil = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<!doctype html><title>evil</title><p>hello</p>')
    })
    await new Promise<void>(resolve => evil.listen(0, '127.0.0.1', resolve))
    try {
      await a.page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`)
      const target = `http://127.0.0.1:${port}/v1/messages`
      // the daemon's answer never reaches the page (Cross-Origin-Resource-Policy
      // blocks it there): the browser's own network log shows what was sent and answered
      const cdp = await a.context.newCDPSession(a.page)
      await cdp.send('Network.enable')
      // (a request's events may come in any order: each is kept by request id)
      const posts = new Set<string>()
      const cookies = new Map<string, string>()
      const statuses = new Map<string, number>()
      let settle = (_status: number): void => {}
      const answered = new Promise<number>(resolve => { settle = resolve })
      const check = (): void => { for (const id of posts) if (statuses.has(id)) settle(statuses.get(id) ?? 0) }
      cdp.on('Network.requestWillBeSent', e => { if (e.request.url === target && e.request.method === 'POST') posts.add(e.requestId); check() })
      cdp.on('Network.requestWillBeSentExtraInfo', e => { cookies.set(e.requestId, String(e.headers.Cookie ?? e.headers.cookie ?? '')) })
      cdp.on('Network.responseReceivedExtraInfo', e => { statuses.set(e.requestId, e.statusCode); check() })
      // a "simple" request (no preflight): what a CSRF page can make a browser send
      await a.page.evaluate(async url => {
        await fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ to: 'bob', body: 'csrf' }) }).catch(() => {})
      }, target)
      expect(await answered).toBe(403)
      // the browser did send the session cookie (same site): the Origin check is what refused it
      expect([...posts].map(id => cookies.get(id)).join()).toMatch(/parley_session=/)
      // and with CORS: the browser learns nothing either
      const read = await a.page.evaluate(async url => {
        try {
          const r = await fetch(url, { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: 'bob', body: 'csrf json' }) })
          return `status ${r.status}`
        } catch (err) {
          return `refused: ${(err as Error).name}`
        }
      }, target)
      expect(read).toMatch(/^refused|^status 403$/)
    } finally {
      await new Promise(resolve => evil.close(resolve))
    }
    // the daemon did not act: nothing for bob in the history or the outbox
    expect(await api(alice, '/v1/history/bob')).toEqual([])
    expect(await api(alice, '/v1/outbox')).toEqual([])

    // contacts: rename, block and unblock, remove
    await a.page.goto(`${alice.api.url}/#/contacts`)
    // (and the theme chosen in the page wins over the system's, and is kept)
    const background = async (): Promise<string> => a.page.evaluate(() => getComputedStyle(document.body).backgroundColor)
    const light = await background()
    // the page applies a choice on its next render, not within selectOption: wait for it
    await a.page.getByRole('combobox', { name: 'Theme' }).selectOption('dark')
    await expect.poll(background, SEEN).not.toBe(light)
    const dark = await background()
    await a.page.reload()
    await a.page.getByRole('button', { name: 'Rename bob' }).waitFor(SEEN)
    await expect.poll(background, SEEN).toBe(dark)
    await a.page.getByRole('combobox', { name: 'Theme' }).selectOption('auto')
    await expect.poll(background, SEEN).toBe(light)
    await a.page.getByRole('button', { name: 'Rename bob' }).click()
    await a.page.getByRole('textbox', { name: 'New name for bob' }).fill('robert')
    await a.page.getByRole('button', { name: 'Save' }).click()
    await a.page.getByRole('status').filter({ hasText: 'Renamed bob to robert.' }).waitFor(SEEN)
    expect((await api(alice, '/v1/contacts')).map((c: any) => [c.name, c.peerId])).toEqual([['robert', bobPeer]])
    await a.page.getByRole('button', { name: 'Block robert' }).click()
    await a.page.getByRole('button', { name: 'Unblock robert' }).waitFor(SEEN)
    expect((await api(alice, '/v1/blocked')).map((b: any) => b.peerId)).toEqual([bobPeer])
    await a.page.getByRole('button', { name: 'Unblock robert' }).click()
    await a.page.getByRole('status').filter({ hasText: 'Unblocked robert.' }).waitFor(SEEN)
    expect(await api(alice, '/v1/blocked')).toEqual([])
    await a.page.getByRole('button', { name: 'Remove robert' }).click()
    await a.page.getByRole('status').filter({ hasText: 'Removed robert.' }).waitFor(SEEN)
    expect(await api(alice, '/v1/contacts')).toEqual([])

    // without the login link: no session, and the app says what to do
    const stranger = await browser.newContext()
    const page = await stranger.newPage()
    await page.goto(alice.api.url)
    await page.getByRole('alert').filter({ hasText: 'Open the app with parley open' }).waitFor(SEEN)
    await stranger.close()
  })
})
