/**
 * Files offered and received (protocols/file/README.md): the node's side of
 * /parley/file/1.0.0. Outgoing, it hashes a file, queues its offer as a chat
 * message and serves the file to that one peer while the offer stands;
 * incoming, it records offers, decides (blocked: never; a contact's up to
 * `autoAcceptSize`: at once; otherwise the user), fetches accepted files
 * chunk by chunk, verifies each, and keeps them content-addressed under its
 * directory. Progress is recorded only for chunks verified and fsynced, so a
 * transfer resumes from there after a broken connection or a crash.
 */
import { copyFile, mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { hexToBytes } from '@noble/hashes/utils.js'
import { TypedEventEmitter } from 'main-event'
import { backoff } from '../../common/backoff.js'
import {
  chunkCount, CHUNK_BYTES, CorruptChunkError, FILE_PROTOCOL, FileFetchStream, FileRefusedError, FileResponse, HASH_BYTES,
  MAX_REQUEST_CHUNKS, MAX_REQUEST_HASHES
} from '../../protocols/file/index.js'
import { digestFile, sha256, sha256OfFile, wholeHasher, writeAndDigest } from './hashing.js'
import { FILE_OFFER_TYPE } from './content-type.js'
import { encodeOffer, parseOffer, thumbnailProblem } from './offer.js'
import type { Thumbnail } from './offer.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import type { FileDigest } from './hashing.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { ChunkReader, FileServerInit, OfferedFile } from '../../protocols/file/index.js'
import type { FileRow, FileRowStatus } from '../store/files.js'
import type { Store } from '../store/index.js'
import type { AbortOptions, Connection, Logger, PeerId } from '@libp2p/interface'

export type FileStatus = FileRowStatus

/** A transfer as the API shows it. */
export interface FileInfo {
  id: string
  peerId: string
  direction: 'in' | 'out'
  name: string
  type: string
  size: number
  sha256: string
  status: FileStatus
  /** Why it failed, waits or was refused. */
  reason?: string
  /** Incoming: bytes verified and kept so far. Outgoing: bytes served so far (chunks served again count again, up to the size). */
  bytes: number
  /** Incoming, once complete: where the content is. Outgoing: the file served. */
  path?: string
  /** The offer's preview image (image/png, image/jpeg or image/webp; base64), if the sender gave one. */
  thumbnail?: { type: string, data: string }
  createdAt: number
  updatedAt: number
}

export interface FileProgress {
  id: string
  direction: 'in' | 'out'
  bytes: number
  size: number
  /** Bytes a second over this attempt so far. */
  rate: number
}

export interface FileTransferEvents {
  'file:offer': CustomEvent<FileInfo>
  'file:progress': CustomEvent<FileProgress>
  'file:status': CustomEvent<FileInfo>
}

/** The receiver's bounds (SECURITY.md, "Files"). */
export interface FileLimits {
  /** A contact's offer up to this size is fetched without asking. */
  autoAcceptSize: number
  /** Offers over this size are refused outright. */
  maxFileSize: number
  /** Received files (each content once) and transfers under way may take this much disk. */
  quotaBytes: number
  /** Fetches running at once (one per peer). */
  maxConcurrentFetches: number
}

export const FILE_LIMIT_DEFAULTS: FileLimits = {
  autoAcceptSize: 25 * 1024 * 1024,
  maxFileSize: 1024 * 1024 * 1024,
  quotaBytes: 4 * 1024 * 1024 * 1024,
  maxConcurrentFetches: 4
}

/** A sender whose chunks fail their hash this many times in one transfer is given up on. */
export const MAX_CORRUPT_CHUNKS = 8

/** Chunks fsynced together before the progress is recorded (4 MiB: at most that is fetched again after a crash). */
const SYNC_EVERY_CHUNKS = 128

/** Verified chunks the fetcher writes at once (one writev, 256 KiB). */
const WRITE_BATCH_CHUNKS = 8

/** Batches the fetcher lets wait for the disk before it stops reading (1 MiB). */
const MAX_WRITES_IN_FLIGHT = 4

/** Chunks the server reads from disk at once (512 KiB). */
const READ_AHEAD_CHUNKS = 16

/** Bytes of a circuit's allowance kept back for the request, framing, yamux and noise. */
const CIRCUIT_MARGIN_BYTES = 8_192

/** Per-chunk overhead on the wire (length prefix, protobuf fields, yamux and noise framing), counted generously. */
const CHUNK_OVERHEAD_BYTES = 256

/** Least time between two `file:progress` events of one transfer. */
export const PROGRESS_INTERVAL_MS = 250

/** An offer not fetched within this long is withdrawn: its file is no longer served. */
export const OFFER_TTL_MS = 7 * 24 * 60 * 60_000

export const WAITING_FOR_DIRECT = 'waiting for a direct connection: the only path is a relay whose limit is too small for a chunk'

export class UnknownFileError extends Error {
  static override name = 'UnknownFileError'
  override name = 'UnknownFileError'
}

export class FileStateError extends Error {
  static override name = 'FileStateError'
  override name = 'FileStateError'
}

export class FileQuotaError extends Error {
  static override name = 'FileQuotaError'
  override name = 'FileQuotaError'
}

export interface FileTransferComponents {
  store: Store
  /** Whether a peer is blocked, and whether it is a contact (auto-accept). */
  isBlocked(peer: string): boolean
  isContact(peer: string): boolean
  /** Queues the offer message (in the store's open transaction) and returns its id. */
  queueOffer(peer: string, body: string, contentType: string): string
  /** Takes back an offer message still waiting in the outbox (best effort). */
  cancelOffer(id: string): void
  /** A connection to `peer`, direct if there is one. */
  connect(peer: PeerId, options: AbortOptions): Promise<Connection>
  peerIdOf(peer: string): PeerId
  clock: Clock
  log: Logger
}

export interface SendFileOptions {
  /** The name the recipient sees (default: the path's last part; required for a stream). */
  name?: string
  /** The media type (default application/octet-stream). */
  type?: string
  /** Serve a copy made now rather than the file itself (a stream is always copied). */
  copy?: boolean
  /** A preview image for the offer, made by the caller: image/png, image/jpeg or image/webp, at most 8 KiB. */
  thumbnail?: Thumbnail
}

const FINAL: readonly FileStatus[] = ['complete', 'failed', 'refused', 'cancelled']
const SERVABLE: readonly FileStatus[] = ['offering', 'offered', 'transferring']

function retryable (status: FileResponse.Status): boolean {
  return status === FileResponse.Status.RATE_LIMITED || status === FileResponse.Status.UNAVAILABLE
}

/** A message id (8-4-4-4-12) from the 32 hex digits of its 16 bytes. */
function messageIdOf (hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

interface Running {
  controller: AbortController
  peer: string
}

export class FileTransfers extends TypedEventEmitter<FileTransferEvents> {
  private readonly store: Store
  private readonly running = new Map<string, Running>()
  private readonly retryAt = new Map<string, { at: number, attempts: number }>()
  private readonly served = new Map<string, number>()
  /** Outgoing transfers being served now, and their sizes. */
  private readonly servedSize = new Map<string, number>()
  /** When this process began serving each, and how much was served by then: the sender's rate. */
  private readonly servedSince = new Map<string, { at: number, bytes: number }>()
  private readonly lastProgress = new Map<string, number>()
  private timer: ClockTimer | undefined
  private stopped = false
  readonly dir: string
  /** Ids of the offers sent whose message has not settled yet (see `offersOut`). */
  private offering?: Set<string>

  /** `temporary`: the directory is this run's only (a node without a data dir) and goes when it stops. */
  constructor (private readonly components: FileTransferComponents, readonly limits: FileLimits, dir: string, private readonly temporary = false) {
    super()
    this.store = components.store
    this.dir = dir
  }

  /** Creates the directories and resumes the transfers a previous run left. */
  async start (): Promise<void> {
    await mkdir(join(this.dir, 'partial'), { recursive: true, mode: 0o700 })
    await mkdir(join(this.dir, 'outgoing'), { recursive: true, mode: 0o700 })
    // offers whose message was kept but whose own row was not (a crash in between)
    for (const m of this.store.files.offersWithoutRow()) {
      this.onMessage({ id: m.id, from: m.peer, contentType: FILE_OFFER_TYPE, body: m.body, request: m.request })
    }
    this.pump()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.components.clock.clearTimeout(this.timer)
    for (const run of this.running.values()) run.controller.abort(new Error('the node stopped'))
    if (this.temporary) await rm(this.dir, { recursive: true, force: true }).catch(() => {})
  }

  // ---- the API ----

  async send (peer: string, source: string | AsyncIterable<Uint8Array>, options: SendFileOptions = {}): Promise<FileInfo> {
    const type = options.type ?? 'application/octet-stream'
    const thumbnailError = options.thumbnail == null ? undefined : thumbnailProblem(options.thumbnail)
    if (thumbnailError != null) throw new FileStateError(`the thumbnail cannot be offered: ${thumbnailError}`)
    let digest: FileDigest
    let path: string
    let owned = false
    let mtime: number | undefined
    const name = options.name ?? (typeof source === 'string' ? source.split(/[/\\]/).pop() : undefined)
    if (name == null || name === '') throw new FileStateError('a file sent from a stream needs a name')
    if (typeof source === 'string' && options.copy !== true) {
      path = source
      mtime = (await stat(path)).mtimeMs
      digest = await digestFile(path)
    } else {
      path = join(this.dir, 'outgoing', `${this.components.clock.now()}-${Math.random().toString(16).slice(2)}`)
      owned = true
      if (typeof source === 'string') {
        await copyFile(source, path)
        digest = await digestFile(path)
      } else {
        digest = await writeAndDigest(source, path)
      }
    }
    const offer = { name, size: digest.size, type, sha256: digest.sha256, root: digest.root, ...(options.thumbnail == null ? {} : { thumbnail: options.thumbnail }) }
    // the body is checked as the recipient will check it: a bad name or type fails here
    const body = encodeOffer(offer)
    if (parseOffer(body) == null) {
      if (owned) await rm(path, { force: true })
      throw new FileStateError(`"${name}" or "${type}" cannot be offered: a name is 1 to 255 bytes without control characters, a type is a media type`)
    }
    const now = this.components.clock.now()
    const id = this.store.transaction(() => {
      const id = this.components.queueOffer(peer, body, FILE_OFFER_TYPE)
      this.store.files.insert({ id, peer, direction: 'out', ...offer, hashes: digest.hashes, path, mtime, owned, status: 'offering', createdAt: now })
      this.offersOut().add(id)
      return id
    })
    return this.info(this.store.files.one(id, 'out', peer) as FileRow)
  }

  /** Accepts an incoming offer that waits for the user. */
  accept (id: string): FileInfo {
    const row = this.incoming(id)
    if (row.status !== 'pending') throw new FileStateError(`file ${id} is ${row.status}: only an offer waiting for acceptance can be accepted`)
    if (this.components.isBlocked(row.peer)) throw new FileStateError(`${row.peer} is blocked; unblock it first`)
    this.checkQuota(row)
    this.setStatus(row, 'queued')
    this.pump()
    return this.get(id) as FileInfo
  }

  /** Refuses an incoming offer (or stops fetching it), or withdraws an outgoing one. */
  cancel (id: string): FileInfo {
    const row = this.store.files.get(id)
    if (row == null) throw new UnknownFileError(`no file with id ${id}`)
    if (FINAL.includes(row.status)) throw new FileStateError(`file ${id} is already ${row.status}`)
    if (row.direction === 'out') {
      this.components.cancelOffer(id)
      this.setStatus(row, 'cancelled', 'withdrawn by the sender')
      this.dropCopy(row)
    } else {
      this.running.get(id)?.controller.abort(new Error('refused'))
      this.setStatus(row, 'refused', 'refused by the recipient')
      rm(this.partialPath(row), { force: true }).catch(() => {})
      // the sender may stop offering it: best effort, the offer's end is the sender's too
      this.tellSender(row, 'refused')
    }
    return this.get(id) as FileInfo
  }

  get (id: string): FileInfo | undefined {
    const row = this.store.files.get(id)
    return row == null ? undefined : this.info(row)
  }

  list (options: { direction?: 'in' | 'out', peer?: string, limit?: number } = {}): FileInfo[] {
    return this.store.files.list(options).map(r => this.info(r))
  }

  // ---- from the node ----

  /** A message arrived: if it is an offer, record it and decide. */
  onMessage (message: { id: string, from: string, contentType: string, body: string, request?: boolean }): void {
    if (message.contentType !== FILE_OFFER_TYPE) return
    if (this.components.isBlocked(message.from)) return
    const offer = parseOffer(message.body)
    if (offer == null) {
      this.components.log('an offer from %s that is not well formed, shown as text only', message.from)
      return
    }
    const now = this.components.clock.now()
    let status: FileStatus = 'pending'
    let reason: string | undefined
    if (offer.size > this.limits.maxFileSize) {
      status = 'refused'
      reason = `over the largest file this node accepts (${this.limits.maxFileSize} bytes, files.maxFileSize)`
    } else if (message.request !== true && this.components.isContact(message.from) && offer.size <= this.limits.autoAcceptSize) {
      if (this.store.files.quotaUsed() + offer.size <= this.limits.quotaBytes) status = 'queued'
      else reason = `accepting it would go over the disk quota (${this.limits.quotaBytes} bytes, files.quotaBytes)`
    }
    const inserted = this.store.files.insert({ id: message.id, peer: message.from, direction: 'in', ...offer, status, reason, createdAt: now })
    if (!inserted) return
    const info = this.get(message.id) as FileInfo
    this.dispatchEvent(new CustomEvent('file:offer', { detail: info }))
    // a stranger is not dialled back to be told (its offers would make this node dial wherever it is)
    if (status === 'refused' && message.request !== true) {
      const row = this.store.files.one(message.id, 'in', message.from) as FileRow
      this.tellSender(row, 'refused')
    }
    if (status === 'queued') this.pump()
  }

  /** The offer message's fate: delivered or kept in a mailbox (it stands), or refused (the offer fails). */
  onOfferStatus (id: string, status: string, reason?: string): void {
    // every message sent settles: only an offer's is looked up (one lookup per message sent, otherwise)
    const offers = this.offersOut()
    if (!offers.delete(id)) return
    const row = this.store.files.getDirected(id, 'out')
    if (row == null || row.status !== 'offering') return
    if (status === 'delivered' || status === 'stored') this.setStatus(row, 'offered')
    else if (status === 'failed') {
      this.setStatus(row, 'failed', `the offer was not delivered: ${reason ?? 'refused'}`)
      this.dropCopy(row)
    }
  }

  /**
   * The offers sent whose message has not settled (delivered, stored or
   * failed): read from the store on first use, then kept as offers are made
   * and settle. An offer leaves 'offering' only as its message settles.
   */
  private offersOut (): Set<string> {
    this.offering ??= new Set(this.store.files.withStatus('out', ['offering']).map(row => row.id))
    return this.offering
  }

  /** A connection to `peer` opened: a transfer waiting for it may go now. */
  wake (peer: string): void {
    let woke = false
    for (const [id, retry] of this.retryAt) {
      const row = this.store.files.get(id)
      if (row?.peer === peer && retry.at > this.components.clock.now()) {
        retry.at = 0
        woke = true
      }
    }
    if (woke) this.pump()
  }

  /** The file server's callbacks (protocols/file/server.ts). */
  serverInit (): Pick<FileServerInit, 'lookup' | 'onServed' | 'onFinish' | 'onUnservable' | 'hash'> {
    return {
      hash: sha256,
      lookup: (hex, peer) => this.offered(messageIdOf(hex), peer),
      onServed: (hex, peer, bytes) => { this.onServed(messageIdOf(hex), peer.toString(), bytes) },
      onFinish: (hex, peer, outcome) => { this.onFinish(messageIdOf(hex), peer.toString(), outcome) },
      onUnservable: (hex, peer, reason, changed) => {
        const row = this.store.files.one(messageIdOf(hex), 'out', peer.toString())
        if (row == null || !changed) return
        this.setStatus(row, 'failed', reason)
        this.dropCopy(row)
      }
    }
  }

  // ---- serving ----

  private offered (id: string, peer: PeerId): OfferedFile | undefined {
    const row = this.store.files.one(id, 'out', peer.toString())
    if (row == null || !SERVABLE.includes(row.status) || row.hashes == null || row.path == null) return undefined
    if (row.createdAt + OFFER_TTL_MS < this.components.clock.now()) return undefined
    const path = row.path
    return {
      size: row.size,
      hashes: row.hashes,
      open: async (): Promise<ChunkReader> => {
        const handle = await open(path, 'r')
        // chunks are asked for in order: read ahead, a few at a time, fewer trips to the disk
        let ahead: { first: number, bytes: Uint8Array<ArrayBuffer> } | undefined
        const readAhead = async (index: number): Promise<void> => {
          const length = Math.min(READ_AHEAD_CHUNKS * CHUNK_BYTES, Math.max(0, row.size - index * CHUNK_BYTES))
          const buffer = new Uint8Array(length)
          let filled = 0
          while (filled < length) {
            const { bytesRead } = await handle.read(buffer, filled, length - filled, index * CHUNK_BYTES + filled)
            if (bytesRead === 0) break
            filled += bytesRead
          }
          ahead = { first: index, bytes: buffer.subarray(0, filled) }
        }
        return {
          read: async (index, length) => {
            if (ahead == null || index < ahead.first || index >= ahead.first + READ_AHEAD_CHUNKS) await readAhead(index)
            const held = ahead as { first: number, bytes: Uint8Array<ArrayBuffer> }
            const start = (index - held.first) * CHUNK_BYTES
            // a copy: the chunk outlives the read-ahead buffer in the stream's queue
            return held.bytes.slice(start, Math.min(start + length, held.bytes.byteLength))
          },
          close: async () => { await handle.close() }
        }
      }
    }
  }

  private onServed (id: string, peer: string, bytes: number): void {
    // called for every chunk: the row (and its hash list) is read once per transfer, not per chunk
    let size = this.servedSize.get(id)
    if (size == null) {
      const row = this.store.files.one(id, 'out', peer)
      if (row == null) return
      if (row.status !== 'transferring') this.setStatus(row, 'transferring')
      size = row.size
      this.servedSize.set(id, size)
      this.servedSince.set(id, { at: this.components.clock.now(), bytes: this.served.get(id) ?? 0 })
    }
    const total = Math.min(size, (this.served.get(id) ?? 0) + bytes)
    this.served.set(id, total)
    // the rate since this process began serving it, as the fetcher counts its own
    const since = this.servedSince.get(id)
    const elapsed = since == null ? 0 : this.components.clock.now() - since.at
    this.progress(id, 'out', total, size, since == null || elapsed <= 0 ? 0 : Math.round((total - since.bytes) * 1000 / elapsed))
  }

  private onFinish (id: string, peer: string, outcome: 'complete' | 'refused'): void {
    const row = this.store.files.one(id, 'out', peer)
    if (row == null || FINAL.includes(row.status)) return
    this.served.set(id, outcome === 'complete' ? row.size : this.served.get(id) ?? 0)
    this.setStatus(row, outcome, outcome === 'refused' ? 'refused by the recipient' : undefined)
    this.dropCopy(row)
  }

  private dropCopy (row: FileRow): void {
    this.servedSize.delete(row.id)
    this.servedSince.delete(row.id)
    if (row.owned && row.path != null) rm(row.path, { force: true }).catch(() => {})
  }

  // ---- fetching ----

  private incoming (id: string): FileRow {
    const row = this.store.files.getDirected(id, 'in')
    if (row == null) throw new UnknownFileError(`no file offered to this node with id ${id}`)
    return row
  }

  private checkQuota (row: FileRow): void {
    const used = this.store.files.quotaUsed()
    if (used + row.size > this.limits.quotaBytes) {
      throw new FileQuotaError(`accepting ${row.name} (${row.size} bytes) would go over the disk quota: ${used} of ${this.limits.quotaBytes} bytes used (files.quotaBytes)`)
    }
  }

  private partialPath (row: FileRow): string {
    return join(this.dir, 'partial', `${row.id}-${row.sha256.slice(0, 16)}`)
  }

  /** Starts the transfers due now, within the bounds; arms a timer for the next. */
  private pump (): void {
    if (this.stopped) return
    this.components.clock.clearTimeout(this.timer)
    const now = this.components.clock.now()
    let next = Infinity
    const busyPeers = new Set([...this.running.values()].map(r => r.peer))
    for (const row of this.store.files.withStatus('in', ['queued', 'waiting', 'transferring'])) {
      if (this.running.size >= this.limits.maxConcurrentFetches) break
      if (this.running.has(row.id) || busyPeers.has(row.peer)) continue
      const retry = this.retryAt.get(row.id)
      if (retry != null && retry.at > now) {
        next = Math.min(next, retry.at)
        continue
      }
      busyPeers.add(row.peer)
      this.run(row)
    }
    if (next !== Infinity) this.timer = this.components.clock.setTimeout(() => { this.pump() }, next - now)
  }

  private run (row: FileRow): void {
    const controller = new AbortController()
    this.running.set(row.id, { controller, peer: row.peer })
    this.fetch(row, controller.signal)
      .then(outcome => {
        if (outcome === 'done') this.retryAt.delete(row.id)
        else this.later(row, outcome)
      }, err => {
        this.components.log('fetching %s failed - %e', row.id, err)
        this.later(row, { delay: undefined, reason: `${String(err.message)}` })
      })
      .finally(() => {
        this.running.delete(row.id)
        this.pump()
      })
  }

  /** The transfer waits, with the reason the user sees, and is tried again later. */
  private later (row: FileRow, outcome: { delay?: number, reason: string }): void {
    const current = this.store.files.one(row.id, 'in', row.peer)
    if (current == null || FINAL.includes(current.status) || this.stopped) return
    const retry = this.retryAt.get(row.id) ?? { at: 0, attempts: 0 }
    retry.attempts++
    retry.at = this.components.clock.now() + (outcome.delay ?? backoff(retry.attempts, { first: 1_000, max: 60_000, jitter: 'equal' }))
    this.retryAt.set(row.id, retry)
    if (current.status !== 'waiting' || current.reason !== outcome.reason) this.setStatus(current, 'waiting', outcome.reason)
  }

  /** One attempt at fetching a file: 'done' when it ended for good, or how long to wait before the next. */
  private async fetch (initial: FileRow, signal: AbortSignal): Promise<'done' | { delay?: number, reason: string }> {
    let row = initial
    const existing = this.store.files.completePathOf(row.sha256)
    if (existing != null) {
      // already here: the same content is kept once, and the sender may stop offering it
      this.complete(row, existing)
      this.tellSender(row, 'complete')
      return 'done'
    }
    const peerId = this.components.peerIdOf(row.peer)
    let connection: Connection
    try {
      connection = await this.components.connect(peerId, { signal })
    } catch (err: any) {
      return { reason: `the sender is unreachable now: ${String(err.message)}` }
    }
    const chunks = chunkCount(row.size)
    let budget = connection.limits?.bytes == null ? Infinity : Number(connection.limits.bytes) - CIRCUIT_MARGIN_BYTES
    const perChunk = CHUNK_BYTES + CHUNK_OVERHEAD_BYTES
    if (chunks > 0 && budget < perChunk) {
      // a circuit used up by earlier requests is closed for a fresh one; if even
      // a fresh one cannot carry a chunk, only a direct path (the path upgrader's,
      // or a later dial) can: the transfer waits for it
      if (!this.freshCircuit.has(row.id)) {
        this.freshCircuit.add(row.id)
        await connection.close().catch(err => { connection.abort(err) })
        return { delay: 0, reason: 'resuming over a new relayed circuit' }
      }
      return { delay: 30_000, reason: WAITING_FOR_DIRECT }
    }
    this.freshCircuit.delete(row.id)
    let stream: FileFetchStream
    try {
      stream = new FileFetchStream(await connection.newStream(FILE_PROTOCOL, { signal, runOnLimitedConnection: true }), { hash: sha256 })
    } catch (err: any) {
      return { reason: `could not open a file stream to the sender: ${String(err.message)}` }
    }
    const offer = hexToBytes(row.id.replaceAll('-', ''))
    const relayed = connection.limits != null
    let progressed = false
    try {
      if (row.status !== 'transferring') this.setStatus(row, 'transferring')
      if (row.hashes == null) {
        const hashes = new Uint8Array(chunks * HASH_BYTES)
        for (let first = 0; first < chunks; first += MAX_REQUEST_HASHES) {
          const count = Math.min(MAX_REQUEST_HASHES, chunks - first)
          if (budget < count * HASH_BYTES + CHUNK_OVERHEAD_BYTES) return { delay: 0, reason: 'resuming over a new relayed circuit' }
          hashes.set(await stream.hashes(offer, first, count, { signal }), first * HASH_BYTES)
          budget -= count * HASH_BYTES + CHUNK_OVERHEAD_BYTES
        }
        if (bytesToHex(sha256(hashes)) !== row.root) {
          this.fail(row, 'the sender\'s chunk hashes do not match the offer')
          return 'done'
        }
        this.store.files.setHashes(row, hashes)
        row = { ...row, hashes }
      }
      const hashes = row.hashes as Uint8Array
      const partial = this.partialPath(row)
      const handle = await open(partial, 'a+').then(async h => { await h.close(); return open(partial, 'r+') })
      let verified = row.verified
      let written = verified
      // from the first byte in this attempt, the whole's SHA-256 is taken on the way; a resumed one reads the file back at the end
      const whole = verified === 0 ? wholeHasher() : undefined
      const startedAt = this.components.clock.now()
      const startBytes = verified * CHUNK_BYTES
      // an fsync runs beside the transfer (the stream keeps flowing) and records,
      // once done, the chunks written before it began: only those are durable
      let syncing: Promise<void> | undefined
      let syncError: Error | undefined
      const record = (upTo: number): void => {
        if (upTo <= verified) return
        verified = upTo
        this.store.files.setVerified(row, verified)
        progressed = true
      }
      const syncBeside = (): void => {
        if (syncing != null) return
        const upTo = written
        syncing = handle.datasync()
          .then(() => { record(upTo) }, (err: Error) => { syncError = err })
          .finally(() => { syncing = undefined })
      }
      /** Everything written so far made durable and recorded. */
      const sync = async (): Promise<void> => {
        await syncing
        if (syncError != null) throw syncError
        if (written === verified) return
        const upTo = written
        await handle.datasync()
        record(upTo)
      }
      try {
        // the next chunk to ask for: received and verified, perhaps not yet written
        let received = written
        for (;;) {
          if (received >= chunks) break
          const fit = budget === Infinity ? MAX_REQUEST_CHUNKS : Math.floor(budget / perChunk)
          if (fit < 1) return { delay: 0, reason: 'resuming over a new relayed circuit' }
          const count = Math.min(MAX_REQUEST_CHUNKS, chunks - received, fit)
          // verified chunks are written a few at a time (one writev), in order, while
          // the stream goes on (awaiting each write would stall the sender on the
          // stream's window); at most a few writes wait at once
          let pending: Uint8Array[] = []
          let writing: Promise<void> = Promise.resolve()
          let inFlight = 0
          let writeError: Error | undefined
          const flush = (): void => {
            if (pending.length === 0) return
            const buffers = pending
            pending = []
            const at = received - buffers.length
            inFlight++
            writing = writing.then(async () => {
              // after a failed write nothing later is written: `written` stays a prefix
              if (writeError != null) return
              await handle.writev(buffers, at * CHUNK_BYTES)
              for (const buffer of buffers) whole?.update(buffer)
              written = at + buffers.length
              const bytes = Math.min(row.size, written * CHUNK_BYTES)
              const elapsed = Math.max(1, this.components.clock.now() - startedAt)
              this.progress(row.id, 'in', bytes, row.size, Math.round((bytes - startBytes) * 1000 / elapsed))
            }).catch((err: Error) => { writeError ??= err }).finally(() => { inFlight-- })
          }
          try {
            for await (const chunk of stream.chunks(offer, row.size, hashes, received, count, { signal })) {
              pending.push(chunk.data)
              received = chunk.index + 1
              budget -= perChunk
              if (pending.length >= WRITE_BATCH_CHUNKS) {
                flush()
                if (inFlight > MAX_WRITES_IN_FLIGHT) await writing
              }
              if (writeError != null) throw writeError
              if (syncError != null) throw syncError
              if (written - verified >= SYNC_EVERY_CHUNKS) syncBeside()
            }
          } finally {
            // what was verified before an error is kept too
            flush()
            await writing
            if (writeError == null) await sync()
          }
          if (writeError != null) throw writeError
        }
        await handle.datasync()
      } finally {
        await handle.close()
      }
      // the chunks were each verified; the whole is checked too, and names the content
      const sha = whole != null ? whole.digest('hex') : await sha256OfFile(partial)
      if (sha !== row.sha256) {
        await rm(partial, { force: true })
        this.store.files.setVerified(row, 0)
        this.fail(row, 'the content does not match the offer\'s SHA-256')
        return 'done'
      }
      const path = join(this.dir, row.sha256)
      await rename(partial, path)
      this.complete(row, path)
      await stream.finish(offer, 'complete', { signal }).catch(() => {})
      await stream.close()
      return 'done'
    } catch (err: any) {
      stream.abort(err)
      if (signal.aborted) return { reason: 'stopped' }
      if (err instanceof CorruptChunkError) {
        const retry = this.retryAt.get(row.id) ?? { at: 0, attempts: 0 }
        const corrupt = (this.corrupt.get(row.id) ?? 0) + 1
        this.corrupt.set(row.id, corrupt)
        this.retryAt.set(row.id, retry)
        if (corrupt >= MAX_CORRUPT_CHUNKS) {
          this.fail(row, `the sender sent ${corrupt} chunks that do not match their hashes`)
          return 'done'
        }
        return { delay: 0, reason: `chunk ${err.index} did not match its hash: fetched again` }
      }
      if (err instanceof FileRefusedError) {
        if (retryable(err.status)) return { delay: err.retryAfterMs, reason: `the sender asks to wait: ${err.reason}` }
        this.fail(row, err.status === FileResponse.Status.NOT_FOUND
          ? 'the sender no longer offers this file'
          : err.status === FileResponse.Status.CHANGED ? 'the sender\'s file changed since it was offered' : `the sender refused: ${err.reason}`)
        return 'done'
      }
      // a circuit that reached its relay's limit ends like this: go on over the next one at once
      if (relayed && progressed) return { delay: 0, reason: 'resuming over a new relayed circuit' }
      return { reason: `the connection broke: ${String(err.message)}` }
    }
  }

  private readonly corrupt = new Map<string, number>()
  /** Transfers whose last connection was a circuit just dialled: too small for a chunk means waiting for a direct path. */
  private readonly freshCircuit = new Set<string>()

  private complete (row: FileRow, path: string): void {
    this.store.transaction(() => {
      this.store.files.setVerified(row, chunkCount(row.size))
      this.store.files.setPath(row, path)
      this.setStatus(row, 'complete')
    })
    this.retryAt.delete(row.id)
    this.corrupt.delete(row.id)
  }

  private fail (row: FileRow, reason: string): void {
    this.setStatus(row, 'failed', reason)
    this.retryAt.delete(row.id)
    this.corrupt.delete(row.id)
    rm(this.partialPath(row), { force: true }).catch(() => {})
  }

  /** Tells the sender the recipient is done with an offer; best effort, in the background. */
  private tellSender (row: FileRow, outcome: 'complete' | 'refused'): void {
    const offer = hexToBytes(row.id.replaceAll('-', ''))
    const signal = AbortSignal.timeout(10_000)
    this.components.connect(this.components.peerIdOf(row.peer), { signal })
      .then(async connection => {
        const stream = new FileFetchStream(await connection.newStream(FILE_PROTOCOL, { signal, runOnLimitedConnection: true }), { hash: sha256 })
        await stream.finish(offer, outcome, { signal }).finally(async () => { await stream.close() })
      })
      .catch(err => { this.components.log('could not tell %s the offer %s was %s - %e', row.peer, row.id, outcome, err) })
  }

  // ---- events ----

  private setStatus (row: FileRow, status: FileStatus, reason?: string): void {
    this.store.files.setStatus(row, status, reason, this.components.clock.now())
    const info = this.get(row.id)
    const current = this.store.files.one(row.id, row.direction, row.peer)
    if (info != null && current != null) this.dispatchEvent(new CustomEvent('file:status', { detail: this.info(current) }))
  }

  private progress (id: string, direction: 'in' | 'out', bytes: number, size: number, rate: number): void {
    const now = this.components.clock.now()
    const last = this.lastProgress.get(id) ?? 0
    if (bytes < size && now - last < PROGRESS_INTERVAL_MS) return
    this.lastProgress.set(id, now)
    this.dispatchEvent(new CustomEvent('file:progress', { detail: { id, direction, bytes, size, rate } }))
  }

  private info (row: FileRow): FileInfo {
    const bytes = row.direction === 'in'
      ? (row.status === 'complete' ? row.size : Math.min(row.size, row.verified * CHUNK_BYTES))
      : (row.status === 'complete' ? row.size : this.served.get(row.id) ?? 0)
    return {
      id: row.id,
      peerId: row.peer,
      direction: row.direction,
      name: row.name,
      type: row.type,
      size: row.size,
      sha256: row.sha256,
      status: row.status,
      ...(row.reason == null ? {} : { reason: row.reason }),
      bytes,
      ...(row.path == null ? {} : { path: row.path }),
      ...(row.thumbnail == null ? {} : { thumbnail: { type: row.thumbnail.type, data: Buffer.from(row.thumbnail.data).toString('base64') } }),
      createdAt: row.createdAt,
      updatedAt: row.updatedAt
    }
  }
}
