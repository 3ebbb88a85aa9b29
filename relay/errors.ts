/** The installed @libp2p/circuit-relay-v2 lacks what parley hooks to enforce its limits. */
export class UnsupportedRelayServerError extends Error {
  static override name = 'UnsupportedRelayServerError'
  override name = 'UnsupportedRelayServerError'
}

/** The metrics endpoint could not listen where it was told to. */
export class MetricsEndpointError extends Error {
  static override name = 'MetricsEndpointError'
  override name = 'MetricsEndpointError'
}
