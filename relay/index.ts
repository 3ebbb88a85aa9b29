export { createRelay, ParleyRelay } from './relay.js'
export type { RelayConfig, RelayLimits } from './config.js'
