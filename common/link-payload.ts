/**
 * The payload of parley's one-line links (invites `parley:…`, relay links
 * `parley-relay:…`): base64url of a small JSON object naming a peer and its
 * addresses. One reader for both, strict: a link cut short or pasted over
 * must not pass for a whole one.
 */
import { fromString, toString } from 'uint8arrays'

/** What every link carries: a peer ID (`p`) and addresses (`a`), both still unchecked strings. */
export interface PeerAndAddrs {
  p: string
  a: string[]
  [key: string]: unknown
}

export function encodeLinkPayload (value: PeerAndAddrs): string {
  return toString(fromString(JSON.stringify(value)), 'base64url')
}

/** The payload's object, or undefined when it is not base64url of JSON `{ p: string, a: string[] }`. */
export function decodeLinkPayload (payload: string): PeerAndAddrs | undefined {
  // a lenient decoder skips characters outside the alphabet
  if (!/^[A-Za-z0-9_-]+$/.test(payload)) return undefined
  let parsed: any
  try {
    parsed = JSON.parse(toString(fromString(payload, 'base64url')))
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.p !== 'string' || !Array.isArray(parsed.a) ||
    !parsed.a.every((a: unknown) => typeof a === 'string')) return undefined
  return parsed
}
