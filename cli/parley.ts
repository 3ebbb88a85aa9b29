#!/usr/bin/env node
/**
 * The `parley` command. Each subcommand lives with what it runs: `parley node`
 * in cli/commands.ts (which starts the daemon, daemon/), `parley relay` in relay/cli.ts.
 */
import { Command } from 'commander'
import { nodeCommands } from './commands.js'
import { relayCommand } from '../relay/cli.js'

const program = new Command('parley')
  .description('A decentralized instant messenger on libp2p: direct when it can, relayed when it must')
  .showHelpAfterError()
nodeCommands(program)
program.addCommand(relayCommand())

program.parseAsync().catch((err: Error) => {
  console.error(`parley: ${err.message}`)
  // the stack is for whoever debugs parley, not for its users
  if (process.env.PARLEY_DEBUG != null || process.env.DEBUG != null) console.error(err.stack)
  process.exitCode = 1
})
