#!/usr/bin/env node
/**
 * The `parley` command. Each subcommand lives with what it runs: `parley node`
 * in cli/commands.ts (which starts the daemon, daemon/), `parley relay` in relay/cli.ts.
 */
import { readFileSync } from 'node:fs'
import { Command } from 'commander'
import { nodeCommands } from './commands.js'
import { relaysCommands } from './relays.js'
import { jsonError } from './input.js'
import { relayCommand } from '../relay/cli.js'

/** The package's version: package.json is two levels up from both dist/cli/parley.js and the bundle, dist/bin/parley.js. */
function packageVersion (): string {
  try {
    return String(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version)
  } catch {
    return 'unknown'
  }
}

const program = new Command('parley')
  .description('A decentralized instant messenger on libp2p: direct when it can, relayed when it must')
  // the Node.js too: the command runs on the one parley pins, not necessarily the system's
  .version(`parley ${packageVersion()} (Node.js ${process.version})`, '-V, --version', 'print the version and the Node.js it runs on')
  .showHelpAfterError()
  // a usage error (a bad option value) comes before any action runs: --json on
  // the command line is all there is to go by; set before the commands, which inherit it
  .configureOutput({
    outputError: (text, write) => {
      if (process.argv.slice(2).includes('--json')) console.log(JSON.stringify({ error: { name: 'UsageError', message: text.replace(/^error: /, '').trim() } }))
      else write(text)
    }
  })
nodeCommands(program)
relaysCommands(program)
program.addCommand(relayCommand())
program.addHelpText('after', `
Examples:
  parley init                          # create ~/.local/share/parley (or $PARLEY_HOME)
  parley node --relay <multiaddr>      # run your node; other terminals use the commands below
  parley invite                        # a line to give a friend, who runs: parley contacts add <you> <invite>
  parley chat bob
  parley <command> --help              # each command's options and examples`)

// what the command running now asked for: --json wants its errors as JSON too
let jsonOutput = false
program.hook('preAction', (_program, action) => {
  jsonOutput = action.opts().json === true
})

program.parseAsync().catch((err: Error) => {
  if (jsonOutput) {
    console.log(JSON.stringify(jsonError(err)))
  } else {
    console.error(`parley: ${err.message}`)
  }
  // the stack is for whoever debugs parley, not for its users
  if (process.env.PARLEY_DEBUG != null || process.env.DEBUG != null) console.error(err.stack)
  process.exitCode = 1
})
