/**
 * What the local web server checks before it serves anything, as pure
 * functions of the request's headers: the Host (DNS rebinding), the Origin
 * and Sec-Fetch-Site of a request a browser made with the session cookie
 * (CSRF), and the headers every answer carries. SECURITY.md says what each
 * stops.
 */

/**
 * The Host headers the server answers: its own loopback names, with any port
 * (SSH port forwarding may put the app on another). Anything else is a
 * browser pointed at 127.0.0.1 by DNS rebinding (its page's own name in
 * Host), and is refused before anything else is looked at.
 */
const LOOPBACK_HOST = /^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$/i

export function isLoopbackHost (host: string | undefined): boolean {
  return host != null && LOOPBACK_HOST.test(host)
}

/** On every answer, the API's JSON included: the page loads nothing from anywhere but this server, and no other page may frame or embed it. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin'
}

/** The cookie that carries a browser session. */
export const SESSION_COOKIE = 'parley_session'

/** The Set-Cookie value for a new session: no script can read it, no other site's request carries it. No Max-Age: it ends with the browser session, and the daemon forgets it on restart anyway. */
export function sessionCookie (secret: string): string {
  return `${SESSION_COOKIE}=${secret}; HttpOnly; SameSite=Strict; Path=/`
}

/** The session secret in a Cookie header, if any (the first, should there be several). */
export function sessionCookieOf (header: string | undefined): string | undefined {
  if (header == null) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** Methods that change something: the ones a forged request must not get through. */
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

export interface BrowserRequest {
  method: string
  /** The Host header (already checked to be a loopback name). */
  host: string
  origin?: string
  secFetchSite?: string
}

/**
 * Why a request authenticated by the session cookie is refused, or undefined
 * when it may go on. The cookie is SameSite=Strict, so another site's page
 * cannot send it; but every port of 127.0.0.1 is the same *site*, so a page
 * served by any other local program could. Hence:
 *
 * - `Sec-Fetch-Site` other than `same-origin` or `none` (a typed URL) is
 *   refused on every method: the browser itself says another page sent it;
 * - a state-changing method must carry an `Origin` that is this very origin
 *   (`http://` + the Host it was sent to): no Origin is refused too, since
 *   every browser that could run the app sends one on such requests.
 */
export function crossSiteRefusal (request: BrowserRequest): string | undefined {
  const site = request.secFetchSite
  if (site != null && site !== 'same-origin' && site !== 'none') {
    return `a request from another page (Sec-Fetch-Site: ${site.slice(0, 32)}) may not use the app's session`
  }
  if (!STATE_CHANGING.has(request.method)) return undefined
  if (request.origin == null) return `a ${request.method} with the app's session must carry an Origin header`
  if (request.origin.toLowerCase() !== `http://${request.host.toLowerCase()}`) {
    return `a ${request.method} with the app's session must come from the app's own origin, not ${request.origin.slice(0, 200)}`
  }
  return undefined
}
