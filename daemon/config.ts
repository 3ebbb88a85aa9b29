import { homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { CONFIG_FILE, envLayer, flagLayer, parseConfig, readConfigFile } from '../common/config.js'
import { NODE_DEFAULTS, nodeConfigSchema } from '../node/config.js'
import type { ConfigBinding } from '../common/config.js'
import type { NodeConfig } from '../node/config.js'

/** The data dir: `--data-dir`, else `PARLEY_HOME`, else `$XDG_DATA_HOME/parley` (`~/.local/share/parley`). */
export function defaultDataDir (env: NodeJS.ProcessEnv = process.env): string {
  if (env.PARLEY_HOME != null && env.PARLEY_HOME !== '') return env.PARLEY_HOME
  const xdg = env.XDG_DATA_HOME != null && env.XDG_DATA_HOME !== '' ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share')
  return join(xdg, 'parley')
}

/**
 * What the daemon's config file, `PARLEY_*` variables and flags may set: the
 * node's options that make sense for a long-running daemon, checked by the
 * node's own schema (the node fills in their defaults), and the API's port.
 */
export const daemonConfigSchema = nodeConfigSchema.pick({
  listen: true,
  announce: true,
  relays: true,
  mailboxes: true,
  mailboxAfter: true,
  bootstrap: true,
  iceServers: true,
  iceBindAddress: true,
  dhtProtocol: true,
  heartbeatInterval: true,
  relayHeartbeatInterval: true,
  messageExpiry: true,
  limits: true,
  connectionLimits: true,
  files: true
}).extend({
  apiPort: z.int({ error: 'must be a port number (0 for any free port)' }).min(0).max(65535).default(0)
})

export type DaemonConfig = z.output<typeof daemonConfigSchema>

/** The file a first run writes: the keys people edit most, with their defaults (the node's schema lists the rest). */
export const DEFAULT_CONFIG_FILE = {
  listen: NODE_DEFAULTS.listen,
  announce: [],
  relays: [],
  iceServers: [],
  apiPort: 0
}

const ENV: Record<string, ConfigBinding> = {
  PARLEY_LISTEN: { key: 'listen', kind: 'list' },
  PARLEY_ANNOUNCE: { key: 'announce', kind: 'list' },
  PARLEY_RELAYS: { key: 'relays', kind: 'list' },
  PARLEY_MAILBOXES: { key: 'mailboxes', kind: 'list' },
  PARLEY_BOOTSTRAP: { key: 'bootstrap', kind: 'list' },
  PARLEY_API_PORT: { key: 'apiPort', kind: 'number' },
  PARLEY_ICE_BIND_ADDRESS: { key: 'iceBindAddress', kind: 'string' },
  PARLEY_DHT_PROTOCOL: { key: 'dhtProtocol', kind: 'string' },
  PARLEY_HEARTBEAT_INTERVAL: { key: 'heartbeatInterval', kind: 'number' },
  PARLEY_RELAY_HEARTBEAT_INTERVAL: { key: 'relayHeartbeatInterval', kind: 'number' },
  PARLEY_MESSAGE_EXPIRY: { key: 'messageExpiry', kind: 'number' }
}

export interface DaemonFlags {
  listen?: string[]
  announce?: string[]
  relay?: string[]
  mailbox?: string[]
  bootstrap?: string[]
  apiPort?: string
  iceServers?: string
  iceBindAddress?: string
}

function parseIceJson (text: string | undefined, origin: string): unknown {
  if (text == null || text.trim() === '') return undefined
  try {
    return JSON.parse(text)
  } catch (err: any) {
    return `${origin} is not JSON (${err.message})`
  }
}

/**
 * Loads the daemon's config: defaults < `<dataDir>/config.json` < `PARLEY_*`
 * environment < flags. Invalid values fail with the key path and the reason.
 */
export async function loadDaemonConfig (dataDir: string, flags: DaemonFlags, env: NodeJS.ProcessEnv = process.env): Promise<DaemonConfig> {
  const file = await readConfigFile(join(dataDir, CONFIG_FILE), { optional: true })
  const environment = envLayer(ENV, env)
  const ice = parseIceJson(env.PARLEY_ICE_SERVERS, 'PARLEY_ICE_SERVERS')
  if (ice !== undefined) {
    environment.values.iceServers = ice
    environment.origins = { ...environment.origins, iceServers: 'environment variable PARLEY_ICE_SERVERS' }
  }
  const flagValues = flagLayer({
    listen: { value: flags.listen, flag: '--listen' },
    announce: { value: flags.announce, flag: '--announce' },
    relays: { value: flags.relay, flag: '--relay' },
    mailboxes: { value: flags.mailbox, flag: '--mailbox' },
    bootstrap: { value: flags.bootstrap, flag: '--bootstrap' },
    apiPort: { value: flags.apiPort, flag: '--api-port', kind: 'number' },
    iceServers: { value: parseIceJson(flags.iceServers, '--ice-servers'), flag: '--ice-servers' },
    iceBindAddress: { value: flags.iceBindAddress, flag: '--ice-bind-address' }
  })
  return parseConfig(daemonConfigSchema, [file, environment, flagValues])
}

/** The node's options from a checked daemon config: all but the API's port. */
export function toNodeConfig (dataDir: string, config: DaemonConfig): NodeConfig {
  const { apiPort, ...node } = config
  return { dataDir, ...node }
}
