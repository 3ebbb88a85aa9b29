/**
 * A file offer as it travels: the body of a chat message of its own content
 * type (protocols/file/README.md §2), JSON checked field by field on the way
 * in. The `summary` is what a client that knows nothing of files shows.
 */
import { z } from 'zod'
import { isMediaType, MAX_CONTENT_TYPE_BYTES, utf8Length } from '../../protocols/im/index.js'
import { MAX_FILE_BYTES } from '../../protocols/file/index.js'

export { FILE_OFFER_TYPE } from './content-type.js'

/** Longest file name an offer may carry, in bytes of UTF-8. */
export const MAX_FILE_NAME_BYTES = 255

export interface FileOffer {
  name: string
  size: number
  /** Media type of the content. */
  type: string
  /** Hex SHA-256 of the whole content. */
  sha256: string
  /** Hex SHA-256 of the chunk hashes, concatenated (spec §3). */
  root: string
}

const hex256 = z.string().regex(/^[0-9a-f]{64}$/, { error: 'must be 64 lowercase hex digits' })

// no control characters: a name is shown to the user, never used as a path
const fileName = z.string().min(1).refine(s => utf8Length(s) <= MAX_FILE_NAME_BYTES && s.isWellFormed() && !/\p{Cc}/u.test(s), { error: `a name of 1 to ${MAX_FILE_NAME_BYTES} bytes without control characters` })

const offerSchema = z.object({
  summary: z.string().optional(),
  file: z.object({
    name: fileName,
    size: z.number().int().min(0).max(MAX_FILE_BYTES),
    type: z.string().refine(s => utf8Length(s) <= MAX_CONTENT_TYPE_BYTES && isMediaType(s), { error: 'a media type' }),
    sha256: hex256,
    root: hex256
  })
})

/** A size for people: 1.2 MiB. */
export function formatBytes (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

/** The message body of an offer. */
export function encodeOffer (offer: FileOffer): string {
  return JSON.stringify({
    summary: `[file] ${offer.name} (${formatBytes(offer.size)}, ${offer.type}): a file offer, fetched with a client that speaks /parley/file/1.0.0`,
    file: { name: offer.name, size: offer.size, type: offer.type, sha256: offer.sha256, root: offer.root }
  })
}

/** The offer in a message body, or undefined when it is not a well-formed one. */
export function parseOffer (body: string): FileOffer | undefined {
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    return undefined
  }
  const parsed = offerSchema.safeParse(json)
  return parsed.success ? parsed.data.file : undefined
}
