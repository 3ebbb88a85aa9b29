/** What the CLI reads from its arguments and how it reports errors, apart from commander so that it can be tested alone. */
import { InvalidArgumentError } from 'commander'
import type { PeerInfo } from '../node/types.js'

/** 2026-12-01, 2026-12-01T17:00, 2026-12-01T17:00:00.250Z, 2026-12-01 17:00:00+01:00 */
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/

/**
 * `--before`: an ISO 8601 date or time (`2026-12-01`, `2026-12-01T17:00:00Z`)
 * or milliseconds since the epoch, as ms since the epoch.
 */
export function timeArgument (value: string): number {
  const text = value.trim()
  // a bare number is ms, never a year; anything else must be ISO, not whatever
  // Date.parse's lenient fallback makes of it ('1.5' would be a date in 2001)
  const ms = /^\d+$/.test(text) ? Number(text) : ISO_DATE_TIME.test(text) ? Date.parse(text) : NaN
  if (!Number.isSafeInteger(ms) || ms < 0) throw new InvalidArgumentError('must be an ISO date (2026-12-01, 2026-12-01T17:00:00Z) or milliseconds since 1970')
  return ms
}

/** A message of only whitespace: `chat` ignores such a line, and `send` refuses one, the same rule. */
export function isBlankMessage (text: string): boolean {
  return text.trim() === ''
}

/** An error as `--json` prints it: one object on stdout, so that a script reads every outcome the same way. */
export function jsonError (err: unknown): { error: { name: string, message: string } } {
  if (err instanceof Error) {
    // an API error's name is the daemon's (e.g. UnknownContactError), not the client's class
    const code = (err as { code?: unknown }).code
    return { error: { name: typeof code === 'string' && code !== '' ? code : err.name, message: err.message } }
  }
  return { error: { name: 'Error', message: String(err) } }
}

/** How `peers` shows a peer's kind: a configured relay apart from the people, whose path is what matters. */
export function peerKind (peer: Pick<PeerInfo, 'relay' | 'path'>): string {
  return peer.relay === true ? 'relay' : peer.path
}
