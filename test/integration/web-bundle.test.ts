/**
 * The built web app (dist/web, made by `npm run build`, which `npm test` runs
 * first): small enough (< 150 KB of gzipped JavaScript), and nothing in it
 * that the daemon's Content-Security-Policy would refuse or that would reach
 * another origin: no inline script or style, no eval, no URL to elsewhere.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../fixtures/processes.js'

const WEB = join(ROOT, 'dist/web')
const MAX_GZIPPED_JS = 150 * 1024

describe('the built web app', () => {
  it('is under 150 KB of gzipped JavaScript', async () => {
    const assets = await readdir(join(WEB, 'assets'))
    const scripts = assets.filter(f => f.endsWith('.js'))
    expect(scripts.length).toBeGreaterThan(0)
    let gzipped = 0
    for (const f of scripts) gzipped += gzipSync(await readFile(join(WEB, 'assets', f)), { level: 9 }).length
    expect(gzipped).toBeLessThan(MAX_GZIPPED_JS)
  })

  it('loads only its own files: no inline script or style, no eval, nothing from another origin', async () => {
    const html = await readFile(join(WEB, 'index.html'), 'utf8')
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)]
    expect(scripts.length).toBe(1)
    for (const [, attrs, body] of scripts) {
      expect(body.trim()).toBe('')
      expect(attrs).toMatch(/\bsrc="\/assets\/app-[\w-]+\.js"/)
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i)
    const referenced = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map(m => m[1]).filter(ref => ref !== 'data:,')
    for (const ref of referenced) {
      expect(ref).toMatch(/^\/assets\/[\w.-]+$/)
      await expect(readFile(join(WEB, ref))).resolves.toBeDefined()
    }
    const assets = await readdir(join(WEB, 'assets'))
    for (const f of assets) {
      const text = await readFile(join(WEB, 'assets', f), 'utf8')
      if (f.endsWith('.js')) expect(text).not.toMatch(/\beval\(|new Function\(|import\(\s*["'`]https?:/)
      if (f.endsWith('.css')) expect(text).not.toMatch(/@import|url\(\s*["']?(?!data:)/)
      // the only absolute URLs are XML namespaces, which are names, not fetched
      const urls = [...text.matchAll(/https?:\/\/[^\s"'`)]+/g)].map(m => m[0])
      expect(urls.filter(u => !u.startsWith('http://www.w3.org/'))).toEqual([])
    }
  })
})
