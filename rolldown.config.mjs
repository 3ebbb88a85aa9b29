// The `parley` command (dist/bin/parley.js) bundled, built from tsc's
// dist/cli/parley.js. Loaded module by module, the node daemon reads ~1,500 files at
// start and keeps a module record, a source string and caches for each: a
// bundle takes ~30 MB less memory and starts faster (BENCHMARKS.md, footprint).
// The library (dist/index.js) stays unbundled for the applications that import it.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { defineConfig } from 'rolldown'

/**
 * An ESM import of node:http (@libp2p/websockets has one, and bundled CommonJS
 * code's `require('http')` becomes one) makes Node 24 load undici for the
 * module's lazy WebSocket exports: ~13 MB more memory for a running node. This
 * serves node:http through `require` instead.
 */
const httpWithoutUndici = {
  name: 'node-http-without-undici',
  resolveId: {
    order: 'pre',
    handler (id, importer) {
      if ((id === 'http' || id === 'node:http') && importer !== '\0node-http') return '\0node-http'
    }
  },
  load (id) {
    if (id !== '\0node-http') return
    return `import { createRequire } from 'node:module'
const http = createRequire(import.meta.url)('node:http')
export default http
export const { Agent, ClientRequest, IncomingMessage, METHODS, OutgoingMessage, STATUS_CODES, Server, ServerResponse, createServer, get, globalAgent, maxHeaderSize, request, validateHeaderName, validateHeaderValue } = http
`
  }
}

/**
 * The web app's page: web/index.html with the hashed script and stylesheet
 * put in. The stylesheet is a file of its own, not inlined and not injected by
 * the script, so that the page's CSP allows styles from 'self' only.
 */
const webPage = {
  name: 'parley-web-page',
  buildStart () {
    this.addWatchFile('web/index.html')
    this.addWatchFile('web/style.css')
  },
  generateBundle (_options, bundle) {
    const css = readFileSync('web/style.css')
    const cssName = `assets/app-${createHash('sha256').update(css).digest('hex').slice(0, 8)}.css`
    this.emitFile({ type: 'asset', fileName: cssName, source: css })
    const entry = Object.values(bundle).find(chunk => chunk.type === 'chunk' && chunk.isEntry)
    const html = readFileSync('web/index.html', 'utf8')
      .replace('%STYLE%', `/${cssName}`)
      .replace('%SCRIPT%', `/${entry.fileName}`)
    this.emitFile({ type: 'asset', fileName: 'index.html', source: html })
  }
}

export default defineConfig([{
  input: 'dist/cli/parley.js',
  platform: 'node',
  plugins: [httpWithoutUndici],
  // native addons find their .node files next to their own package
  // (node:http is left to httpWithoutUndici)
  external: [/^node:(?!http$)/, /^node-datachannel(\/|$)/, /^@node-datachannel\//, /^classic-level(\/|$)/],
  output: {
    // parley.js and the chunks it imports when a command needs them: `parley
    // send` loads no libp2p, `parley node` no relay
    dir: 'dist/bin',
    entryFileNames: 'parley.js',
    chunkFileNames: '[name]-[hash].js',
    format: 'esm',
    // names kept, so that a stack trace still says which function it went through
    minify: { mangle: false, compress: true, codegen: { removeWhitespace: true, asciiOnly: true } }
  }
}, {
  // the web app the daemon serves (web/, README "The web app"): for browsers,
  // every module in one hashed file, no code from anywhere else at run time
  input: 'web/main.tsx',
  platform: 'browser',
  plugins: [webPage],
  tsconfig: 'web/tsconfig.json',
  transform: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  output: {
    dir: 'dist/web',
    entryFileNames: 'assets/app-[hash].js',
    chunkFileNames: 'assets/[name]-[hash].js',
    format: 'esm',
    minify: true
  }
}])
