/**
 * The web app's files (dist/web: index.html and hashed assets), served on the
 * API port. Only regular files under the root are served, found by a path
 * whose every segment is checked (no dot segments, no encoded separators, no
 * hidden files) and whose real path (symlinks followed) is still under the
 * root. Small files are kept in memory once read; large ones are streamed, so
 * serving the app costs the daemon little memory either way.
 */
import { createReadStream } from 'node:fs'
import { readFile, realpath, stat } from 'node:fs/promises'
import { basename, dirname, extname, join, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import type { ServerResponse } from 'node:http'

/** Files up to this size are kept in memory once read. */
export const MAX_CACHED_FILE = 1024 * 1024

/** And at most this much in all; past it, files are read from disk each time. */
export const MAX_CACHED_BYTES = 4 * 1024 * 1024

/** What each file is served as; anything else is application/octet-stream (and nosniff keeps the browser to it). */
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm'
}

export function contentTypeOf (file: string): string {
  return CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream'
}

/**
 * Where the built app is, next to the daemon's own built code: dist/web from
 * the bundle (dist/bin/*.js) or from tsc's output (dist/daemon/web/*.js);
 * from the sources (tests run the .ts), the repository's dist/web.
 */
export function defaultWebRoot (moduleUrl: string = import.meta.url): string {
  const here = dirname(fileURLToPath(moduleUrl))
  if (basename(here) === 'bin' && basename(dirname(here)) === 'dist') return join(dirname(here), 'web')
  // dist/daemon/web/ or daemon/web/: two levels up is dist/ or the repository
  const top = dirname(dirname(here))
  return basename(top) === 'dist' ? join(top, 'web') : join(top, 'dist', 'web')
}

/**
 * The file a request target names, relative to the root with `/` between
 * segments, or undefined when it names none the server may serve: every
 * segment is decoded and must then be a plain name (no `.`/`..`, no `/`, `\`,
 * NUL or `:` inside, not hidden, not empty). `/` is index.html. The target is
 * taken as sent, before any URL normalisation, so `/a/../b` is refused rather
 * than resolved.
 */
export function webPathOf (target: string): string | undefined {
  const end = target.search(/[?#]/)
  const path = end < 0 ? target : target.slice(0, end)
  if (!path.startsWith('/')) return undefined
  if (path === '/') return 'index.html'
  const segments: string[] = []
  for (const raw of path.slice(1).split('/')) {
    let segment: string
    try {
      segment = decodeURIComponent(raw)
    } catch {
      return undefined
    }
    if (segment === '' || segment.startsWith('.') || /[/\\:\0]/.test(segment)) return undefined
    segments.push(segment)
  }
  return segments.join('/')
}

interface Cached {
  real: string
  size: number
  mtimeMs: number
  body: Buffer
}

export class StaticFiles {
  private rootReal?: string
  private readonly cache = new Map<string, Cached>()
  private cachedBytes = 0

  constructor (readonly root: string) {}

  /**
   * Answers a GET or HEAD for `target` if it names a file under the root;
   * false (nothing written) when it does not.
   */
  async serve (target: string, method: 'GET' | 'HEAD', res: ServerResponse): Promise<boolean> {
    const path = webPathOf(target)
    if (path == null) return false
    const file = await this.find(path)
    if (file == null) return false
    const headers = {
      'content-type': contentTypeOf(path),
      'content-length': file.size,
      // hashed names never change content; index.html is looked at again each time
      'cache-control': path.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache'
    }
    const cached = this.cache.get(path)
    if (cached != null && cached.real === file.real && cached.size === file.size && cached.mtimeMs === file.mtimeMs) {
      res.writeHead(200, headers)
      res.end(method === 'HEAD' ? undefined : cached.body)
      return true
    }
    if (file.size <= MAX_CACHED_FILE && this.makeRoom(path, file.size)) {
      const body = await readFile(file.real)
      // changed between stat and read: served as read, cached next time
      if (body.length === file.size) {
        this.cache.set(path, { ...file, body })
        this.cachedBytes += body.length
      }
      res.writeHead(200, { ...headers, 'content-length': body.length })
      res.end(method === 'HEAD' ? undefined : body)
      return true
    }
    res.writeHead(200, headers)
    if (method === 'HEAD') {
      res.end()
      return true
    }
    await pipeline(createReadStream(file.real, { start: 0, end: Math.max(0, file.size - 1) }), res)
    return true
  }

  /** The file's real path and stat when it is a regular file under the root (symlinks followed, and they must stay in). */
  private async find (path: string): Promise<{ real: string, size: number, mtimeMs: number } | undefined> {
    try {
      this.rootReal ??= await realpath(this.root)
      const real = await realpath(join(this.rootReal, ...path.split('/')))
      if (!real.startsWith(this.rootReal + sep)) return undefined
      const info = await stat(real)
      if (!info.isFile()) return undefined
      return { real, size: info.size, mtimeMs: info.mtimeMs }
    } catch {
      // missing (or the app not built): not found
      return undefined
    }
  }

  /** Frees the old copy of `path` and says whether `size` more bytes fit under MAX_CACHED_BYTES. */
  private makeRoom (path: string, size: number): boolean {
    const old = this.cache.get(path)
    if (old != null) {
      this.cache.delete(path)
      this.cachedBytes -= old.size
    }
    return this.cachedBytes + size <= MAX_CACHED_BYTES
  }
}
