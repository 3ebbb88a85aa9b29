/**
 * The web app's logins: one-time login links (what `parley open` asks for)
 * and the browser sessions they turn into. In memory only: a daemon restart
 * logs every browser out. Both are bounded, so that a client holding the
 * token cannot grow the daemon's memory by asking again and again.
 *
 * Secrets are kept by their SHA-256 only: a lookup compares digests, which
 * tells a timing observer nothing about the secret, and a heap dump holds no
 * usable one.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Clock } from '../../common/clock.js'

/** How long a login link stays good (ms): long enough to reach a browser, short enough that one left in a terminal's scroll-back is dead. */
export const LOGIN_LINK_TTL = 2 * 60_000

/** Login links waiting at once; asking for one more forgets the oldest. */
export const MAX_LOGIN_LINKS = 8

/** Browser sessions at once; one more logs out the one used least recently. */
export const MAX_SESSIONS = 32

/** Bytes of randomness in a login token and a session secret (256 bits). */
export const SECRET_BYTES = 32

export interface LoginLimits {
  linkTtl: number
  maxLinks: number
  maxSessions: number
}

export interface LoginLink {
  token: string
  expiresAt: number
}

function digest (secret: string): string {
  return createHash('sha256').update(secret).digest('base64url')
}

/** A fresh 256-bit secret, URL- and cookie-safe (base64url, 43 characters). */
export function newSecret (): string {
  return randomBytes(SECRET_BYTES).toString('base64url')
}

export class WebLogins {
  /** Digest of a waiting link's token → when it expires; Map order is age. */
  private readonly links = new Map<string, number>()
  /** Digest of a session's secret; Map order is least recently used first. */
  private readonly sessions = new Set<string>()
  private readonly limits: LoginLimits

  constructor (private readonly clock: Clock, limits: Partial<LoginLimits> = {}) {
    this.limits = { linkTtl: LOGIN_LINK_TTL, maxLinks: MAX_LOGIN_LINKS, maxSessions: MAX_SESSIONS, ...limits }
  }

  /** A new one-time login token. */
  createLink (): LoginLink {
    this.dropExpiredLinks()
    while (this.links.size >= this.limits.maxLinks) this.links.delete(this.links.keys().next().value as string)
    const token = newSecret()
    const expiresAt = this.clock.now() + this.limits.linkTtl
    this.links.set(digest(token), expiresAt)
    return { token, expiresAt }
  }

  /** Spends a login token: a new session's secret, or undefined when the token is unknown, used or expired. */
  redeem (token: string): string | undefined {
    const key = digest(token)
    const expiresAt = this.links.get(key)
    // used once, whatever happens next
    this.links.delete(key)
    if (expiresAt == null || expiresAt <= this.clock.now()) return undefined
    while (this.sessions.size >= this.limits.maxSessions) this.sessions.delete(this.sessions.values().next().value as string)
    const secret = newSecret()
    this.sessions.add(digest(secret))
    return secret
  }

  /** Whether `secret` is a live session's; a hit makes it the most recently used. */
  isSession (secret: string): boolean {
    const key = digest(secret)
    if (!this.sessions.has(key)) return false
    this.sessions.delete(key)
    this.sessions.add(key)
    return true
  }

  get pendingLinks (): number {
    this.dropExpiredLinks()
    return this.links.size
  }

  get liveSessions (): number {
    return this.sessions.size
  }

  private dropExpiredLinks (): void {
    const now = this.clock.now()
    for (const [key, expiresAt] of this.links) {
      if (expiresAt <= now) this.links.delete(key)
    }
  }
}
