/**
 * The web server's pure parts: login links and sessions (bounded, single use,
 * expiring), the Host/Origin/Sec-Fetch-Site rules, the cookie, the request
 * target → file rules (one case per traversal attack), where the built app is
 * looked for, and the browser launcher's command line.
 */
import { describe, expect, it } from 'vitest'
import { browserCommand, isLoginUrl } from '../../cli/browser.js'
import { crossSiteRefusal, isLoopbackHost, sessionCookie, sessionCookieOf } from '../../daemon/web/guard.js'
import { LOGIN_LINK_TTL, MAX_LOGIN_LINKS, MAX_SESSIONS, WebLogins } from '../../daemon/web/logins.js'
import { contentTypeOf, defaultWebRoot, webPathOf } from '../../daemon/web/static.js'
import { FakeClock } from '../fixtures/fake-clock.js'

describe('web logins', () => {
  it('makes 256-bit tokens, each good once', () => {
    const logins = new WebLogins(new FakeClock())
    const { token } = logins.createLink()
    expect(Buffer.from(token, 'base64url')).toHaveLength(32)
    expect(logins.createLink().token).not.toBe(token)
    const session = logins.redeem(token)
    expect(session).toBeDefined()
    expect(Buffer.from(session ?? '', 'base64url')).toHaveLength(32)
    expect(logins.isSession(session ?? '')).toBe(true)
    expect(logins.redeem(token)).toBeUndefined()
    expect(logins.isSession(token)).toBe(false)
    expect(logins.redeem('')).toBeUndefined()
  })

  it('lets a link expire after LOGIN_LINK_TTL, and drops expired ones', () => {
    const clock = new FakeClock()
    const logins = new WebLogins(clock)
    const early = logins.createLink()
    expect(early.expiresAt).toBe(clock.now() + LOGIN_LINK_TTL)
    const late = logins.createLink()
    clock.advance(LOGIN_LINK_TTL - 1)
    expect(logins.redeem(late.token)).toBeDefined()
    clock.advance(1)
    expect(logins.pendingLinks).toBe(0)
    expect(logins.redeem(early.token)).toBeUndefined()
  })

  it('keeps at most MAX_LOGIN_LINKS links, forgetting the oldest', () => {
    const logins = new WebLogins(new FakeClock())
    const links = Array.from({ length: MAX_LOGIN_LINKS + 1 }, () => logins.createLink())
    expect(logins.pendingLinks).toBe(MAX_LOGIN_LINKS)
    expect(logins.redeem(links[0].token)).toBeUndefined()
    expect(logins.redeem(links[1].token)).toBeDefined()
  })

  it('keeps at most MAX_SESSIONS sessions, the least recently used going first', () => {
    const logins = new WebLogins(new FakeClock())
    const sessions = Array.from({ length: MAX_SESSIONS }, () => logins.redeem(logins.createLink().token) ?? '')
    expect(logins.isSession(sessions[0])).toBe(true)
    const more = logins.redeem(logins.createLink().token) ?? ''
    expect(logins.liveSessions).toBe(MAX_SESSIONS)
    expect(logins.isSession(sessions[1])).toBe(false)
    expect(logins.isSession(sessions[0])).toBe(true)
    expect(logins.isSession(more)).toBe(true)
  })
})

describe('the request checks', () => {
  it('accepts the loopback names with any port as Host, nothing else', () => {
    for (const host of ['127.0.0.1', '127.0.0.1:7070', 'localhost:1', 'LOCALHOST:8080', '[::1]:9000', '[::1]']) expect(isLoopbackHost(host), host).toBe(true)
    for (const host of [undefined, '', 'evil.example', 'localhost.evil.example', '127.0.0.1.nip.io', '127.0.0.2', 'localhost.', '127.0.0.1:', '127.0.0.1:123456', '[::1', 'user@127.0.0.1', '0.0.0.0', '[::ffff:127.0.0.1]']) {
      expect(isLoopbackHost(host), String(host)).toBe(false)
    }
  })

  it('lets a session GET through from the app or a typed URL, and refuses one another page made', () => {
    const host = '127.0.0.1:7070'
    expect(crossSiteRefusal({ method: 'GET', host })).toBeUndefined()
    expect(crossSiteRefusal({ method: 'GET', host, secFetchSite: 'same-origin' })).toBeUndefined()
    expect(crossSiteRefusal({ method: 'GET', host, secFetchSite: 'none' })).toBeUndefined()
    expect(crossSiteRefusal({ method: 'GET', host, secFetchSite: 'cross-site' })).toMatch(/another page/)
    // another port of 127.0.0.1 is the same site
    expect(crossSiteRefusal({ method: 'GET', host, secFetchSite: 'same-site' })).toMatch(/another page/)
  })

  it('lets a state-changing session request through only with this very origin', () => {
    const host = '127.0.0.1:7070'
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      expect(crossSiteRefusal({ method, host, origin: 'http://127.0.0.1:7070' }), method).toBeUndefined()
      expect(crossSiteRefusal({ method, host, origin: 'http://127.0.0.1:7070', secFetchSite: 'same-origin' }), method).toBeUndefined()
      expect(crossSiteRefusal({ method, host }), method).toMatch(/Origin/)
      for (const origin of ['http://evil.example', 'http://127.0.0.1:7071', 'https://127.0.0.1:7070', 'http://localhost:7070', 'null', 'http://127.0.0.1:7070.evil.example', '']) {
        expect(crossSiteRefusal({ method, host, origin }), `${method} ${origin}`).toBeDefined()
      }
      expect(crossSiteRefusal({ method, host, origin: 'http://127.0.0.1:7070', secFetchSite: 'cross-site' }), method).toBeDefined()
    }
    // forwarded over SSH: the origin the browser used
    expect(crossSiteRefusal({ method: 'POST', host: 'localhost:9000', origin: 'http://localhost:9000' })).toBeUndefined()
  })

  it('sets the cookie HttpOnly, SameSite=Strict, Path=/ and finds it among others', () => {
    expect(sessionCookie('abc')).toBe('parley_session=abc; HttpOnly; SameSite=Strict; Path=/')
    expect(sessionCookieOf('a=1; parley_session=xyz; b=2')).toBe('xyz')
    expect(sessionCookieOf('parley_sessionx=1; xparley_session=2')).toBeUndefined()
    expect(sessionCookieOf(undefined)).toBeUndefined()
    expect(sessionCookieOf('garbage')).toBeUndefined()
  })
})

describe('request target → file', () => {
  it('maps / to index.html and plain paths to their file', () => {
    expect(webPathOf('/')).toBe('index.html')
    expect(webPathOf('/?x=1')).toBe('index.html')
    expect(webPathOf('/assets/app-1a2b.js')).toBe('assets/app-1a2b.js')
    expect(webPathOf('/assets/app-1a2b.js?v=2#x')).toBe('assets/app-1a2b.js')
    expect(webPathOf('/assets/a%20b.png')).toBe('assets/a b.png')
  })

  const attacks: Array<[string, string]> = [
    ['parent segment', '/../etc/passwd'],
    ['parent segment inside', '/assets/../../etc/passwd'],
    ['current segment', '/./index.html'],
    ['encoded slash', '/..%2f..%2fetc/passwd'],
    ['encoded slash, upper case', '/..%2F..%2Fetc/passwd'],
    ['encoded dots', '/%2e%2e/etc/passwd'],
    ['encoded dots, upper case', '/%2E%2E/etc/passwd'],
    ['one dot encoded', '/.%2e/etc/passwd'],
    ['backslash', '/..\\etc\\passwd'],
    ['encoded backslash', '/..%5cetc%5cpasswd'],
    ['NUL', '/index.html%00.png'],
    ['drive letter', '/C:%5cWindows'],
    ['stream name', '/index.html::$DATA'],
    ['hidden file', '/.env'],
    ['empty segment', '//etc/passwd'],
    ['trailing slash', '/assets/'],
    ['malformed escape', '/%ff%'],
    ['not origin-form', 'http://127.0.0.1/index.html'],
    ['asterisk', '*']
  ]
  for (const [name, target] of attacks) {
    it(`refuses ${name}: ${target}`, () => {
      expect(webPathOf(target)).toBeUndefined()
    })
  }

  it('leaves a double-encoded dot as a name with a percent sign: a file that does not exist, never a parent', () => {
    expect(webPathOf('/%252e%252e/x')).toBe('%2e%2e/x')
  })

  it('gives each file type its content type, unknown ones octet-stream', () => {
    expect(contentTypeOf('index.html')).toBe('text/html; charset=utf-8')
    expect(contentTypeOf('assets/a.JS')).toBe('text/javascript; charset=utf-8')
    expect(contentTypeOf('assets/a.woff2')).toBe('font/woff2')
    expect(contentTypeOf('assets/a.exe')).toBe('application/octet-stream')
    expect(contentTypeOf('README')).toBe('application/octet-stream')
  })

  it('looks for the built app in dist/web next to the bundle, tsc\'s output or the sources', () => {
    expect(defaultWebRoot('file:///opt/parley/dist/bin/parley.js')).toBe('/opt/parley/dist/web')
    expect(defaultWebRoot('file:///opt/parley/dist/daemon/web/static.js')).toBe('/opt/parley/dist/web')
    expect(defaultWebRoot('file:///home/u/parley/daemon/web/static.ts')).toBe('/home/u/parley/dist/web')
    // a "dist" further up is not taken for the package's
    expect(defaultWebRoot('file:///dist/u/parley/daemon/web/static.ts')).toBe('/dist/u/parley/dist/web')
  })
})

describe('the browser launcher', () => {
  const url = 'http://127.0.0.1:7070/login?token=' + 'a'.repeat(43)

  it('runs the platform\'s opener with the URL as one argument, or PARLEY_BROWSER', () => {
    expect(browserCommand(url, 'linux', {})).toEqual({ command: 'xdg-open', args: [url] })
    expect(browserCommand(url, 'freebsd', {})).toEqual({ command: 'xdg-open', args: [url] })
    expect(browserCommand(url, 'darwin', {})).toEqual({ command: 'open', args: [url] })
    expect(browserCommand(url, 'win32', {})).toEqual({ command: 'cmd', args: ['/d', '/c', 'start', '""', url] })
    expect(browserCommand(url, 'linux', { PARLEY_BROWSER: '/usr/bin/firefox' })).toEqual({ command: '/usr/bin/firefox', args: [url] })
  })

  it('opens only a login link of the daemon\'s shape', () => {
    expect(isLoginUrl(url)).toBe(true)
    expect(isLoginUrl('http://localhost:1/login?token=abc-_')).toBe(true)
    for (const bad of ['http://evil.example/login?token=a', `${url}&x=1`, `${url} & calc`, 'file:///etc/passwd', '--help', 'http://127.0.0.1:7070/login?token=a"b', 'javascript:alert(1)']) {
      expect(isLoginUrl(bad), bad).toBe(false)
    }
  })
})
