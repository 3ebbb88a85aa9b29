import { Command } from 'commander'
import { collect, stopOnSignals } from '../common/cli.js'
import { encodeRelayLink } from '../common/relay-link.js'
import { LIMIT_OPTIONS, loadRelayConfig, RELAY_DEFAULTS } from './config.js'
import type { RelayFlags, RelayLimits } from './config.js'

interface RelayCommandFlags extends Omit<RelayFlags, 'limits'>, Partial<Record<keyof RelayLimits, string>> {}

const LOOPBACK = /^(127\.|localhost$|\[?::1\]?$)/

/** `parley relay`: runs a public relay in the foreground until SIGINT/SIGTERM. */
export function relayCommand (): Command {
  const command = new Command('relay')
    .description('run a public parley relay (circuit relay v2, DHT server, AutoNAT, metrics)')
    .option('--config <file>', 'JSON config file (env PARLEY_CONFIG); default: <data dir>/config.json if there is one')
    .option('--data-dir <dir>', 'keep the identity here so restarts keep the peer ID (env PARLEY_HOME)')
    .option('--listen <multiaddr>', `TCP or WebSockets address to listen on, repeatable (env PARLEY_LISTEN; default ${RELAY_DEFAULTS.listen.join(' ')})`, collect)
    .option('--announce <multiaddr>', 'public address to announce instead, repeatable (env PARLEY_ANNOUNCE)', collect)
    .option('--bootstrap <multiaddr>', 'other relay to join the DHT through, repeatable (env PARLEY_BOOTSTRAP)', collect)
    .option('--dht-protocol <id>', `DHT protocol id (env PARLEY_DHT_PROTOCOL; default ${RELAY_DEFAULTS.dhtProtocol})`)
    .option('--metrics <host:port>', `serve /metrics and /healthz here (env PARLEY_METRICS; default ${RELAY_DEFAULTS.cliMetrics})`)
    .option('--no-metrics', 'serve no metrics endpoint')
    .option('--no-mailbox', 'serve no mailboxes (store-and-forward for offline nodes; env PARLEY_MAILBOX=false)')
    .option('--shutdown-timeout <ms>', `how long a stop waits for connections to close (env PARLEY_SHUTDOWN_TIMEOUT; default ${RELAY_DEFAULTS.shutdownTimeout})`)
    .option('--heartbeat-interval <ms>', `ping a client connection silent this long; drop it within 1.5 × this (env PARLEY_HEARTBEAT_INTERVAL; default ${RELAY_DEFAULTS.heartbeatInterval})`)
  for (const limit of LIMIT_OPTIONS) {
    command.option(`${limit.flag} ${limit.arg}`, `limit: ${limit.help} (env ${limit.env}; default ${limit.default})`)
  }
  command.addHelpText('after', `
Settings come from, each overriding the one before: defaults, the config file,
PARLEY_* environment variables, flags. The config file holds the same keys as
createRelay's options, limits under "limits"; see relay/config.sample.json.`)

  return command.action(async (_flags: RelayCommandFlags, self: Command) => {
    // `parley --data-dir <dir>` is also a program-wide option (the node's
    // commands share it), and commander gives it to the program even when it
    // follows `relay`: read the options of both
    const flags = self.optsWithGlobals<RelayCommandFlags>()
    const limits: Partial<Record<keyof RelayLimits, string>> = {}
    for (const { key } of LIMIT_OPTIONS) limits[key] = flags[key]
    const { config, origins } = await loadRelayConfig({ ...flags, limits })
    // loaded here: the node's commands in the same program need none of the relay
    const { createRelay } = await import('./relay.js')
    let relay
    try {
      relay = await createRelay(config)
    } catch (err: any) {
      // an endpoint the operator asked for must work; the default one is not
      // worth refusing to relay for (a second relay on the host, say)
      if (err.name !== 'MetricsEndpointError' || origins.get('metrics') !== 'defaults') throw err
      console.error(`parley relay: warning: ${String(err.message)}; running without metrics`)
      relay = await createRelay({ ...config, metrics: false })
    }

    // before the ready line below: whoever waits for it may signal at once
    stopOnSignals('parley relay', relay)

    console.log(`relay peer ID: ${relay.peerId.toString()}`)
    console.log('give nodes one of these addresses (--relay):')
    for (const addr of relay.multiaddrs) console.log(`  ${addr.toString()}`)
    console.log(`give nodes this line: parley relays add ${encodeRelayLink(relay.peerId, relay.multiaddrs)}`)
    const limitsLine = Object.entries(relay.config.limits).map(([key, value]) => `${key}=${value}`).join(' ')
    console.log(`limits: ${limitsLine}`)
    if (relay.config.mailbox.enabled) {
      const { maxMailboxes, maxEnvelopesPerMailbox, maxBytesPerMailbox, maxEnvelopeBytes } = relay.config.mailbox
      console.log(`mailboxes: on (${relay.config.dataDir == null ? 'in memory: lost on restart, give --data-dir' : 'stored in the data dir'}) maxMailboxes=${maxMailboxes} maxEnvelopesPerMailbox=${maxEnvelopesPerMailbox} maxBytesPerMailbox=${maxBytesPerMailbox} maxEnvelopeBytes=${maxEnvelopeBytes}`)
    } else {
      console.log('mailboxes: off')
    }
    if (relay.metricsUrl != null) {
      console.log(`metrics: ${relay.metricsUrl}/metrics health: ${relay.metricsUrl}/healthz`)
      if (!LOOPBACK.test(relay.config.metrics?.host ?? '')) {
        console.error(`parley relay: warning: metrics are served on ${relay.config.metrics?.host ?? ''}, reachable from other machines; firewall the port or use 127.0.0.1`)
      }
    } else {
      console.log('metrics: off')
    }
    console.log('relay running; stop it with SIGTERM or Ctrl-C')
  })
}
