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

/** Largest thumbnail an offer may carry, in bytes (its base64 is a third longer; the body stays far within /im's 32 KiB). */
export const MAX_THUMBNAIL_BYTES = 8 * 1024

/** The image types a thumbnail may have, each with the bytes its content starts with. */
const THUMBNAIL_SIGNATURES: Record<string, (b: Uint8Array) => boolean> = {
  'image/png': b => startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  'image/jpeg': b => startsWith(b, [0xff, 0xd8, 0xff]),
  // RIFF, four bytes of length, WEBP
  'image/webp': b => startsWith(b, [0x52, 0x49, 0x46, 0x46]) && startsWith(b.subarray(8), [0x57, 0x45, 0x42, 0x50])
}

function startsWith (bytes: Uint8Array, prefix: number[]): boolean {
  return bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b)
}

/** A small preview image of the file, chosen by the sender (parley makes none itself). */
export interface Thumbnail {
  /** image/png, image/jpeg or image/webp */
  type: string
  data: Uint8Array
}

/**
 * Why `thumbnail` cannot travel in an offer, or undefined when it can: one of
 * the image types, at most MAX_THUMBNAIL_BYTES, and its bytes start as that
 * type's do (what a client shows is what the type says it is).
 */
export function thumbnailProblem (thumbnail: Thumbnail): string | undefined {
  const signature = THUMBNAIL_SIGNATURES[thumbnail.type]
  if (signature == null) return `a thumbnail is ${Object.keys(THUMBNAIL_SIGNATURES).join(', ')}`
  if (thumbnail.data.length === 0 || thumbnail.data.length > MAX_THUMBNAIL_BYTES) return `a thumbnail is 1 to ${MAX_THUMBNAIL_BYTES} bytes`
  if (!signature(thumbnail.data)) return `the thumbnail's bytes are not ${thumbnail.type}`
  return undefined
}

export interface FileOffer {
  name: string
  size: number
  /** Media type of the content. */
  type: string
  /** Hex SHA-256 of the whole content. */
  sha256: string
  /** Hex SHA-256 of the chunk hashes, concatenated (spec §3). */
  root: string
  thumbnail?: Thumbnail
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

const thumbnailSchema = z.object({
  type: z.string(),
  data: z.string().max(Math.ceil(MAX_THUMBNAIL_BYTES / 3) * 4).regex(/^[A-Za-z0-9+/]*={0,2}$/)
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
    file: {
      name: offer.name,
      size: offer.size,
      type: offer.type,
      sha256: offer.sha256,
      root: offer.root,
      ...(offer.thumbnail == null ? {} : { thumbnail: { type: offer.thumbnail.type, data: Buffer.from(offer.thumbnail.data).toString('base64') } })
    }
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
  if (!parsed.success) return undefined
  const { name, size, type, sha256, root } = parsed.data.file
  const thumbnail = thumbnailOf((json as { file: { thumbnail?: unknown } }).file.thumbnail)
  return { name, size, type, sha256, root, ...(thumbnail == null ? {} : { thumbnail }) }
}

/** An offer's thumbnail, if it has one that meets the rules; a bad one is dropped, the offer kept (spec §2). */
function thumbnailOf (value: unknown): Thumbnail | undefined {
  if (value == null) return undefined
  const parsed = thumbnailSchema.safeParse(value)
  if (!parsed.success) return undefined
  const thumbnail = { type: parsed.data.type, data: new Uint8Array(Buffer.from(parsed.data.data, 'base64')) }
  return thumbnailProblem(thumbnail) == null ? thumbnail : undefined
}
