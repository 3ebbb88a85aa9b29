/** Constants the node, the daemon and the relay share (kept free of imports: the CLI loads this without libp2p). */

/** parley's own DHT, apart from the public amino DHT. */
export const DEFAULT_DHT_PROTOCOL = '/parley/kad/1.0.0'
