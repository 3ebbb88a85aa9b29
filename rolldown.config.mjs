// The `parley` command (dist/bin/parley.js) as one file, built from tsc's
// dist/cli.js. Loaded module by module, the node daemon reads ~1,500 files at
// start and keeps a module record, a source string and caches for each: one
// file takes ~30 MB less memory and starts faster (BENCHMARKS.md, footprint).
// The library (dist/index.js) stays unbundled for the applications that import it.
import { defineConfig } from 'rolldown'

export default defineConfig({
  input: 'dist/cli.js',
  platform: 'node',
  // native addons find their .node files next to their own package
  external: [/^node:/, /^node-datachannel(\/|$)/, /^@node-datachannel\//, /^classic-level(\/|$)/],
  output: {
    file: 'dist/bin/parley.js',
    format: 'esm',
    codeSplitting: false,
    // names kept, so that a stack trace still says which function it went through
    minify: { mangle: false, compress: true, removeWhitespace: true }
  }
})
