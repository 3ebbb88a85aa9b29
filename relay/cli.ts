import { Command } from 'commander'
import { collect, envList, stopOnSignals } from '../common/cli.js'
import { createRelay } from './relay.js'

interface RelayFlags {
  dataDir?: string
  listen?: string[]
  announce?: string[]
  bootstrap?: string[]
}

/** `parley relay`: runs a public relay in the foreground until SIGINT/SIGTERM. */
export function relayCommand (): Command {
  return new Command('relay')
    .description('run a public parley relay (circuit relay v2, DHT server, AutoNAT)')
    .option('--data-dir <dir>', 'keep the identity here so restarts keep the peer ID (env PARLEY_HOME)')
    .option('--listen <multiaddr>', 'address to listen on, repeatable (env PARLEY_LISTEN)', collect)
    .option('--announce <multiaddr>', 'public address to announce, repeatable (env PARLEY_ANNOUNCE)', collect)
    .option('--bootstrap <multiaddr>', 'other relay to join the DHT through, repeatable (env PARLEY_BOOTSTRAP)', collect)
    .action(async (flags: RelayFlags) => {
      const relay = await createRelay({
        dataDir: flags.dataDir ?? process.env.PARLEY_HOME,
        listen: flags.listen ?? envList('PARLEY_LISTEN'),
        announce: flags.announce ?? envList('PARLEY_ANNOUNCE'),
        bootstrap: flags.bootstrap ?? envList('PARLEY_BOOTSTRAP')
      })
      console.log(`relay peer ID: ${relay.peerId.toString()}`)
      console.log('give nodes one of these addresses (--relay):')
      for (const addr of relay.multiaddrs) console.log(`  ${addr.toString()}`)
      stopOnSignals('parley relay', relay)
    })
}
