import { Command } from 'commander'
import { multiaddr } from '@multiformats/multiaddr'
import { ApiClient, ApiError, DaemonNotRunningError } from './client.js'
import { reachabilityLines, terminalSafe } from './format.js'
import { defaultDataDir } from '../daemon/config.js'
import { addConfiguredRelay, configFileOf, configuredRelays, removeConfiguredRelay } from '../daemon/relays-file.js'
import { relayPeerOf } from '../common/relay-link.js'
import type { ParleyNode } from '../node/node.js'
import type { NodeStatus, Reachability, RelayStatus } from '../node/types.js'

function dataDirOf (command: Command): string {
  return (command.optsWithGlobals() as { dataDir?: string }).dataDir ?? defaultDataDir()
}

/** The relay peer ID a saved relay address ends in. */
function relayPeerOfText (addr: string): string | undefined {
  try {
    return relayPeerOf(multiaddr(addr))
  } catch {
    return undefined
  }
}

function safe (text: string): string {
  return terminalSafe(text, { indent: false })
}

/** The running daemon's client, or undefined when none runs for this data dir. */
async function runningClient (dataDir: string): Promise<ApiClient | undefined> {
  try {
    const client = await ApiClient.forDataDir(dataDir)
    await client.id()
    return client
  } catch (err) {
    if (err instanceof DaemonNotRunningError) return undefined
    throw err
  }
}

/** What a relay's first reservation attempt on the running node came to, in one line. */
function reservationLine (status: RelayStatus): string {
  if (status.reserved) return `reserved on ${safe(status.relay)}: your node is reachable through it now`
  return `NOT reserved on ${safe(status.relay)} yet${status.lastError == null ? '' : ` (${safe(status.lastError)})`}; the node keeps trying (see \`parley status\`)`
}

/** The running daemon's status, or undefined when none runs for this data dir. */
async function runningStatus (dataDir: string): Promise<NodeStatus | undefined> {
  try {
    return await (await ApiClient.forDataDir(dataDir)).status()
  } catch {
    return undefined
  }
}

/**
 * `parley relays`: the relays saved in the config file, so that the node uses
 * them at every start. Changes are written to the file, and a running daemon
 * for the same data dir takes them at once through its API (POST and DELETE
 * /v1/relays): no restart.
 */
export function relaysCommands (program: Command): void {
  const relays = program.command('relays')
    .description('the relays your node reserves on, so that people outside your LAN can reach you (`parley relays` lists them)')
    .addHelpText('after', '\nA relay\'s operator gives you a one-line link (parley-relay:…) that `parley relay` prints; `parley relays add <link>` saves it\nin <data dir>/config.json, and a running node uses it at once.')
  relays.command('ls', { isDefault: true })
    .description('list the configured relays and, if the node runs, whether it holds a reservation on each (the default)')
    .option('--json', 'as JSON: {"configured": [...], "running": [{relay, reserved, failures}] or null}')
    .action(async (opts, command: Command) => {
      const dataDir = dataDirOf(command)
      const configured = await configuredRelays(dataDir)
      const status = await runningStatus(dataDir)
      if (opts.json === true) {
        console.log(JSON.stringify({ configured, running: status?.relays ?? null }))
        return
      }
      const lines: string[] = []
      if (configured.length === 0) lines.push(`(no relay saved in ${configFileOf(dataDir)}; add one with \`parley relays add <relay link>\`)`)
      for (const relay of configured) {
        const state = status?.relays.find(r => r.relay === relay)
        const note = status == null ? 'node not running' : state == null ? 'saved, not used by the running node (`parley relays add` it again)' : state.reserved ? 'reserved' : 'NOT reserved (see `parley status`)'
        lines.push(`${safe(relay)}  ${safe(note)}`)
      }
      for (const state of status?.relays ?? []) {
        if (configured.includes(state.relay)) continue
        lines.push(`${safe(state.relay)}  ${state.reserved ? 'reserved' : 'NOT reserved'}, not saved (given with --relay or PARLEY_RELAYS; \`parley relays add\` keeps it)`)
      }
      if (status != null) lines.push(status.reachability.reachable ? `reachable (via ${status.reachability.via})` : 'NOT reachable from outside your LAN (see `parley status`)')
      console.log(lines.join('\n'))
    })
  relays.command('add')
    .description('save a relay in the config file (from its relay link or its multiaddr); a running node reserves on it at once')
    .argument('<relay>', 'relay link (parley-relay:…) or multiaddr ending in /p2p/<relay peer id>')
    .action(async (input: string, _opts, command: Command) => {
      const dataDir = dataDirOf(command)
      const { relay, replaced, unchanged } = await addConfiguredRelay(dataDir, input)
      if (unchanged) {
        console.log(`already saved: ${safe(relay)}`)
      } else {
        console.log(`saved relay ${safe(relay)} in ${configFileOf(dataDir)}${replaced.length > 0 ? ` (in place of ${replaced.map(safe).join(', ')})` : ''}`)
      }
      const client = await runningClient(dataDir)
      if (client == null) {
        console.log('the node is not running: it uses the relay from its next start (`parley node`)')
        return
      }
      try {
        console.log(reservationLine(await client.addRelay(relay)))
      } catch (err: any) {
        if (!(err instanceof ApiError)) throw err
        // saved all the same: the next start tries it again
        throw new Error(`saved, but the running node did not take the relay: ${safe(err.message)}`)
      }
    })
  relays.command('remove')
    .alias('rm')
    .description('remove a relay from the config file')
    .argument('<relay>', 'the relay\'s peer ID or its multiaddr as `parley relays` lists it')
    .action(async (input: string, _opts, command: Command) => {
      const dataDir = dataDirOf(command)
      const removed = await removeConfiguredRelay(dataDir, input)
      for (const relay of removed) console.log(`removed relay ${safe(relay)} from ${configFileOf(dataDir)}`)
      // the running node may use it under another address, or from --relay: it is named by peer ID there
      const wanted = [...new Set(removed.length === 0 ? [input.trim()] : removed.map(r => relayPeerOfText(r) ?? r))]
      const client = await runningClient(dataDir)
      let stopped = 0
      for (const relay of client == null ? [] : wanted) {
        try {
          await client?.removeRelay(relay)
          stopped++
          console.log(`the running node no longer uses relay ${safe(relay.slice(0, 200))}`)
        } catch (err: any) {
          if (!(err instanceof ApiError && err.status === 404)) throw err
        }
      }
      if (removed.length === 0 && stopped === 0) {
        throw new Error(`no saved relay is ${safe(input.slice(0, 200))}; \`parley relays\` lists them`)
      }
    })
}

/**
 * What `parley node` says about reachability: at once when it is settled (no
 * relay configured, or already reachable), else once the first reservation
 * attempt has settled, and again at each change; and a hint for each relay
 * given with --relay that is not saved (the flag is never saved by itself:
 * a one-off test relay must not become permanent).
 */
export async function reportReachability (node: ParleyNode, dataDir: string, flagRelays: string[] = []): Promise<void> {
  const saved: string[] = await configuredRelays(dataDir).catch(() => [])
  for (const relay of flagRelays) {
    if (!saved.includes(relay)) console.log(`relay ${safe(relay)} (--relay) is not saved; \`parley relays add ${safe(relay)}\` keeps it`)
  }
  const say = (r: Reachability): void => {
    console.log(reachabilityLines(r).join('\n'))
  }
  const now = node.reachability()
  const settled = now.reachable || now.reasons.every(reason => !reason.includes('reserving (no answer yet)'))
  if (settled) say(now)
  else console.log('reserving on the relays…')
  node.addEventListener('reachability', (evt) => { say(evt.detail) })
}
