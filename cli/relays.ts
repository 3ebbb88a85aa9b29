import { Command } from 'commander'
import { ApiClient } from './client.js'
import { reachabilityLines, terminalSafe } from './format.js'
import { defaultDataDir } from '../daemon/config.js'
import { addConfiguredRelay, configFileOf, configuredRelays, removeConfiguredRelay } from '../daemon/relays-file.js'
import type { ParleyNode } from '../node/node.js'
import type { NodeStatus, Reachability } from '../node/types.js'

function dataDirOf (command: Command): string {
  return (command.optsWithGlobals() as { dataDir?: string }).dataDir ?? defaultDataDir()
}

function safe (text: string): string {
  return terminalSafe(text, { indent: false })
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
 * picks them up when it is restarted: the reservation keeper and the
 * connection guard's exemptions take their relays when the node is built.
 */
export function relaysCommands (program: Command): void {
  const relays = program.command('relays')
    .description('the relays your node reserves on, so that people outside your LAN can reach you (`parley relays` lists them)')
    .addHelpText('after', '\nA relay\'s operator gives you a one-line link (parley-relay:…) that `parley relay` prints; `parley relays add <link>` saves it\nin <data dir>/config.json. Restart `parley node` to use it.')
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
        const note = status == null ? 'node not running' : state == null ? 'saved; restart the node to use it' : state.reserved ? 'reserved' : 'NOT reserved (see `parley status`)'
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
    .description('save a relay in the config file (from its relay link or its multiaddr)')
    .argument('<relay>', 'relay link (parley-relay:…) or multiaddr ending in /p2p/<relay peer id>')
    .action(async (input: string, _opts, command: Command) => {
      const dataDir = dataDirOf(command)
      const { relay, replaced, unchanged } = await addConfiguredRelay(dataDir, input)
      if (unchanged) {
        console.log(`already saved: ${safe(relay)}`)
      } else {
        console.log(`saved relay ${safe(relay)} in ${configFileOf(dataDir)}${replaced.length > 0 ? ` (in place of ${replaced.map(safe).join(', ')})` : ''}`)
      }
      if (!unchanged) console.log('restart the node (`parley node`) to use it')
    })
  relays.command('remove')
    .alias('rm')
    .description('remove a relay from the config file')
    .argument('<relay>', 'the relay\'s peer ID or its multiaddr as `parley relays` lists it')
    .action(async (input: string, _opts, command: Command) => {
      const dataDir = dataDirOf(command)
      const removed = await removeConfiguredRelay(dataDir, input)
      if (removed.length === 0) {
        throw new Error(`no saved relay is ${safe(input.slice(0, 200))}; \`parley relays\` lists them`)
      }
      for (const relay of removed) console.log(`removed relay ${safe(relay)} from ${configFileOf(dataDir)}`)
      console.log('restart the node (`parley node`) to stop using it')
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
