import { defineConfig } from 'vitest/config'

// the NAT lab only (npm run test:nat, through run.sh as root); `npm test` leaves test/nat out
export default defineConfig({
  test: {
    include: ['test/nat/**/*.test.ts'],
    // scenarios run one after another in one process: they share the lab and its relay
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default']
  }
})
