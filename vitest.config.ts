import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // the browser tests need Chromium: their own script (npm run test:browser)
    exclude: ['test/bench/**', 'test/nat/**', 'test/browser/**', 'node_modules/**'],
    // real nodes on real sockets: generous limits, tests wait on events not clocks
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default']
  }
})
