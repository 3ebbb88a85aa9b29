import { Command } from 'commander'
import { collect, envList, stopOnSignals } from '../common/cli.js'
import { InvalidConfigError } from '../common/errors.js'
import { createNode } from './node.js'
import type { NodeConfig } from './config.js'

interface NodeFlags {
  dataDir?: string
  listen?: string[]
  relay?: string[]
  bootstrap?: string[]
  iceServers?: string
}

function parseIceServers (json: string | undefined): RTCIceServer[] | undefined {
  if (json == null) return undefined
  try {
    const parsed = JSON.parse(json)
    if (!Array.isArray(parsed)) throw new Error('not an array')
    return parsed
  } catch (err: any) {
    throw new InvalidConfigError(`iceServers: expected a JSON array of RTCIceServer objects such as '[{"urls":"stun:host:3478"}]' (${err.message})`)
  }
}

/** `parley node`: runs a node in the foreground until SIGINT/SIGTERM. */
export function nodeCommand (): Command {
  return new Command('node')
    .description('run a parley node in the foreground')
    .option('--data-dir <dir>', 'keep identity and data here (env PARLEY_HOME); omitted: in memory')
    .option('--listen <multiaddr>', 'address to listen on, repeatable (env PARLEY_LISTEN)', collect)
    .option('--relay <multiaddr>', 'relay to hold a reservation on, repeatable (env PARLEY_RELAYS)', collect)
    .option('--bootstrap <multiaddr>', 'DHT bootstrap peer, repeatable (env PARLEY_BOOTSTRAP); default: the relays', collect)
    .option('--ice-servers <json>', 'STUN/TURN servers for WebRTC as a JSON array (env PARLEY_ICE_SERVERS)')
    .action(async (flags: NodeFlags) => {
      const config: NodeConfig = {
        dataDir: flags.dataDir ?? process.env.PARLEY_HOME,
        listen: flags.listen ?? envList('PARLEY_LISTEN'),
        relays: flags.relay ?? envList('PARLEY_RELAYS'),
        bootstrap: flags.bootstrap ?? envList('PARLEY_BOOTSTRAP'),
        iceServers: parseIceServers(flags.iceServers ?? process.env.PARLEY_ICE_SERVERS)
      }
      const node = await createNode(config)
      console.log(`peer ID: ${node.peerId.toString()}`)
      let printed = ''
      const printAddrs = (): void => {
        const addrs = node.multiaddrs.map(a => a.toString())
        if (addrs.length === 0 || addrs.join() === printed) return
        printed = addrs.join()
        console.log('reachable at:')
        for (const addr of addrs) console.log(`  ${addr}`)
      }
      printAddrs()
      node.libp2p.addEventListener('self:peer:update', printAddrs)
      node.addEventListener('message', (evt) => {
        const m = evt.detail
        console.log(`[${new Date(m.receivedAt).toISOString()}] ${m.from} (${m.path}): ${m.body}`)
      })
      node.addEventListener('path:change', (evt) => {
        const { peer, path, transport } = evt.detail
        console.log(path == null ? `${peer}: disconnected` : `${peer}: now ${path} (${transport ?? 'unknown'})`)
      })
      stopOnSignals('parley node', node)
    })
}
