// The build of parley the bench runs: this tree's dist/, or another build's
// index.js named by PARLEY_BENCH_DIST (to compare against).
export const BUILD = import.meta.resolve(process.env.PARLEY_BENCH_DIST ?? '../../../dist/index.js')

/** The URL of one module of that build, by its path under dist/ ('./node/store/index.js'). */
export const buildModule = (path) => new URL(path, BUILD).href
