/**
 * `parley relays add|remove`: edits the `relays` of the daemon's config file
 * (`<data dir>/config.json`), leaving every other key as it is. The new file
 * is checked against the daemon's schema before it is written, and written
 * whole or not at all, private to its owner.
 */
import { randomBytes } from 'node:crypto'
import { rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { CONFIG_FILE, parseConfig, readConfigFile } from '../common/config.js'
import { InvalidConfigError } from '../common/errors.js'
import { makePrivateDir } from '../common/private-files.js'
import { decodeRelayLink, isRelayLink, relayPeerOf } from '../common/relay-link.js'
import { DEFAULT_CONFIG_FILE, daemonConfigSchema } from './config.js'

export function configFileOf (dataDir: string): string {
  return join(dataDir, CONFIG_FILE)
}

async function readRaw (dataDir: string): Promise<Record<string, unknown>> {
  const layer = await readConfigFile(configFileOf(dataDir), { optional: true })
  return layer?.values ?? { ...DEFAULT_CONFIG_FILE }
}

function relaysOf (values: Record<string, unknown>): string[] {
  const relays = values.relays
  return Array.isArray(relays) ? relays.filter((r): r is string => typeof r === 'string') : []
}

function peerOf (addr: string): string | undefined {
  try {
    return relayPeerOf(multiaddr(addr))
  } catch {
    return undefined
  }
}

async function writeChecked (dataDir: string, values: Record<string, unknown>): Promise<void> {
  const file = configFileOf(dataDir)
  // the whole file must still load: a bad relay is refused here, not at the next start
  parseConfig(daemonConfigSchema, [{ source: `config file ${file}`, values }])
  await makePrivateDir(dataDir)
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await writeFile(tmp, JSON.stringify(values, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

/** The relays the config file holds. */
export async function configuredRelays (dataDir: string): Promise<string[]> {
  return relaysOf(await readRaw(dataDir))
}

/**
 * The relay address a `relays add` argument names: a relay link's first
 * address (the relay lists its public ones first), or a multiaddr ending in
 * the relay's /p2p/<peer ID>.
 *
 * @throws InvalidRelayLinkError or InvalidConfigError saying what is wrong
 */
export function relayAddressOf (input: string): string {
  const text = input.trim()
  if (isRelayLink(text)) return decodeRelayLink(text).addrs[0].toString()
  let ma
  try {
    ma = multiaddr(text)
  } catch (err: any) {
    throw new InvalidConfigError(`"${text.slice(0, 200)}" is neither a relay link (parley-relay:…) nor a multiaddr (${String(err.message)})`)
  }
  if (relayPeerOf(ma) == null) throw new InvalidConfigError(`"${text.slice(0, 200)}" must end in the relay's /p2p/<peer id>, or be the relay link \`parley relay\` prints`)
  return ma.toString()
}

/**
 * Saves a relay in the config file. A relay already there under another
 * address gets the new one.
 */
export async function addConfiguredRelay (dataDir: string, input: string): Promise<{ relay: string, replaced: string[], unchanged: boolean }> {
  const relay = relayAddressOf(input)
  const peer = peerOf(relay)
  const values = await readRaw(dataDir)
  const relays = relaysOf(values)
  if (relays.includes(relay)) return { relay, replaced: [], unchanged: true }
  const replaced = relays.filter(r => peerOf(r) === peer)
  values.relays = [...relays.filter(r => peerOf(r) !== peer), relay]
  await writeChecked(dataDir, values)
  return { relay, replaced, unchanged: false }
}

/** Removes the relays that have this peer ID or are this address; which it removed. */
export async function removeConfiguredRelay (dataDir: string, peerOrAddr: string): Promise<string[]> {
  const wanted = peerOrAddr.trim()
  const values = await readRaw(dataDir)
  const relays = relaysOf(values)
  const removed = relays.filter(r => r === wanted || peerOf(r) === wanted)
  if (removed.length === 0) return []
  values.relays = relays.filter(r => !removed.includes(r))
  await writeChecked(dataDir, values)
  return removed
}
