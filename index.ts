/**
 * parley: a decentralized instant messenger on libp2p.
 *
 * `createNode` starts a user's node, `createRelay` a public relay.
 */
export * from './node/index.js'
export * from './relay/index.js'
export { InvalidConfigError, IdentityFileError } from './common/errors.js'
export * as im from './protocols/im/index.js'
