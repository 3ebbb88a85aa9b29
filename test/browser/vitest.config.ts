import { defineConfig } from 'vitest/config'

// The web app in a real Chromium against real daemons (npm run test:browser):
// apart from `npm test`, so that a machine without Chromium still passes that.
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    // real daemons, a relay and a browser on a shared 2-core machine: generous
    // limits; the tests wait on what the pages show, not on clocks
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default']
  }
})
