/**
 * `parley group …` and `parley chat <group>`: group conversations over the
 * daemon's API (see protocols/group/README.md for what a group is).
 */
import { createInterface } from 'node:readline'
import { InvalidArgumentError } from 'commander'
import { ApiClient, ApiError } from './client.js'
import { clock, contactNames, contentTypeNote, shortPeer, terminalSafe } from './format.js'
import { isBlankMessage } from './input.js'
import { liveEvents } from './live-events.js'
import type { GroupInfo, GroupMessage } from '../node/group/types.js'
import type { Command } from 'commander'

/** `group send` exits 0 when every member has it or holds it in a mailbox, and this when some are still to be reached after --wait. */
const EXIT_QUEUED = 2

export interface GroupCommandContext {
  clientOf(command: Command): Promise<ApiClient>
  dataDirOf(command: Command): string
}

function positiveInt (value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number >= 1')
  return n
}

function nonNegativeNumber (value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number >= 0')
  return n
}

/** One line for a group message: when, who (me, a contact's name, or the end of a peer ID), what. */
export function groupLine (m: GroupMessage, self: string, names: ReadonlyMap<string, string>): string {
  const who = m.from === self ? 'me' : terminalSafe(names.get(m.from) ?? shortPeer(m.from), { indent: false })
  return `[${clock(m.from === self ? m.sentAt : m.receivedAt)}] ${who}: ${terminalSafe(m.body)}${contentTypeNote(m.contentType)}`
}

/** A group for people: its name, ID, members (by contact name where there is one), admins marked *. */
export function groupSummary (g: GroupInfo, self: string, names: ReadonlyMap<string, string>): string {
  const label = (peer: string): string => `${peer === self ? 'me' : terminalSafe(names.get(peer) ?? shortPeer(peer), { indent: false })}${g.admins.includes(peer) ? '*' : ''}`
  return `${terminalSafe(g.name, { indent: false })}  ${g.id.slice(0, 12)}…  ${g.members.length} members${g.member ? '' : ' (you are no longer a member)'}: ${g.members.map(label).join(', ')}`
}

export function groupCommands (program: Command, context: GroupCommandContext): void {
  const { clientOf } = context
  const group = program.command('group')
    .description('group conversations: up to 100 members, each message sent to each member (admins, marked *, change the membership)')

  group.command('create')
    .description('create a group with you as its admin')
    .argument('<name>', 'the group\'s name')
    .argument('<member...>', 'peer IDs or contact names (at most 99)')
    .option('--json', 'print the group as JSON')
    .action(async (name: string, members: string[], opts, command: Command) => {
      const client = await clientOf(command)
      const created = await client.createGroup(name, members)
      const [{ peerId }, contacts] = await Promise.all([client.id(), client.contacts()])
      console.log(opts.json === true ? JSON.stringify(created) : `created ${groupSummary(created, peerId, contactNames(contacts))}`)
    })

  for (const [verb, description] of [['add', 'add a member (admins only)'], ['remove', 'remove a member (admins only): it gets nothing written afterwards']] as const) {
    group.command(verb)
      .description(description)
      .argument('<group>', 'group name or ID')
      .argument('<peer>', 'peer ID or contact name')
      .option('--json', 'print the group as JSON')
      .action(async (name: string, peer: string, opts, command: Command) => {
        const client = await clientOf(command)
        const changed = verb === 'add' ? await client.addMember(name, peer) : await client.removeMember(name, peer)
        const [{ peerId }, contacts] = await Promise.all([client.id(), client.contacts()])
        console.log(opts.json === true ? JSON.stringify(changed) : groupSummary(changed, peerId, contactNames(contacts)))
      })
  }

  group.command('leave')
    .description('leave a group (its history stays here)')
    .argument('<group>', 'group name or ID')
    .option('--json', 'print the group as JSON')
    .action(async (name: string, opts, command: Command) => {
      const left = await (await clientOf(command)).leaveGroup(name)
      console.log(opts.json === true ? JSON.stringify(left) : `left ${terminalSafe(left.name, { indent: false })}`)
    })

  group.command('ls', { isDefault: true })
    .description('your groups')
    .option('--json', 'as a JSON array of {id, name, members, admins, creator, member}')
    .action(async (opts, command: Command) => {
      const client = await clientOf(command)
      const [groups, { peerId }, contacts] = await Promise.all([client.groups(), client.id(), client.contacts()])
      const names = contactNames(contacts)
      console.log(opts.json === true ? JSON.stringify(groups) : groups.length === 0 ? '(no groups)' : groups.map(g => groupSummary(g, peerId, names)).join('\n'))
    })

  group.command('send')
    .description('send a message to every member; exit 0 when each has it (or holds it in its mailbox), 2 when some are still to be reached after --wait')
    .argument('<group>', 'group name or ID')
    .argument('<text>', 'the message')
    .option('--wait <seconds>', 'how long to wait for the members', nonNegativeNumber, 30)
    .option('--json', 'print {"id","seq","recipients":[{"peer","status"}]}')
    .action(async (name: string, text: string, opts, command: Command) => {
      if (isBlankMessage(text)) throw Object.assign(new Error('the message is empty (only whitespace): nothing sent'), { name: 'EmptyMessageError' })
      const client = await clientOf(command)
      const answer = await client.sendGroup(name, { body: text, wait: opts.wait })
      if (answer.status === 202) {
        console.log(opts.json === true ? JSON.stringify(answer.body) : `queued ${answer.body.id} for ${answer.body.carriers.length} members`)
        process.exitCode = EXIT_QUEUED
        return
      }
      const { recipients } = answer.body
      const reached = recipients.filter(r => r.status === 'delivered' || r.status === 'stored').length
      console.log(opts.json === true ? JSON.stringify(answer.body) : `sent ${answer.body.id}: ${reached} of ${recipients.length} members have it${reached < recipients.length ? '; the daemon keeps trying the others' : ''}`)
      if (reached < recipients.length) process.exitCode = EXIT_QUEUED
    })

  group.command('history')
    .description('a group\'s messages, in the group\'s order, who wrote each')
    .argument('<group>', 'group name or ID')
    .option('--limit <n>', 'at most this many (the newest)', positiveInt, 50)
    .option('--json', 'as a JSON array')
    .action(async (name: string, opts, command: Command) => {
      const client = await clientOf(command)
      const messages = await client.groupHistory(name, { limit: opts.limit })
      if (opts.json === true) {
        console.log(JSON.stringify(messages))
        return
      }
      const [{ peerId }, contacts] = await Promise.all([client.id(), client.contacts()])
      const names = contactNames(contacts)
      console.log(messages.length === 0 ? '(no messages yet)' : messages.map(m => groupLine(m, peerId, names)).join('\n'))
    })
}

/** The group `target` names, when it is no contact's name and names a group of the node. */
export async function groupTarget (client: ApiClient, target: string): Promise<GroupInfo | undefined> {
  const contacts = await client.contacts()
  if (contacts.some(c => c.name === target)) return undefined
  try {
    return await client.group(target)
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined
    throw err
  }
}

/**
 * `parley chat <group>`: the group's messages so far, then a prompt; typed
 * lines go to every member; each line shows who wrote it.
 */
export async function runGroupChat (client: ApiClient, group: GroupInfo, dataDir: string): Promise<void> {
  const [{ peerId: self }, contacts, history] = await Promise.all([client.id(), client.contacts(), client.groupHistory(group.id, { limit: 20 })])
  const names = contactNames(contacts)
  const name = terminalSafe(group.name, { indent: false })
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY })
  rl.setPrompt(`[${name} · ${group.members.length}] > `)
  const say = (line: string): void => {
    process.stdout.write('\r\x1b[K' + line + '\n')
    rl.prompt(true)
  }
  console.log(`group ${name} (${group.members.length} members); Ctrl-D or /quit to leave`)
  const shown = new Set<string>()
  const key = (m: GroupMessage): string => `${m.from} ${m.seq}`
  for (const m of history) {
    shown.add(key(m))
    console.log(groupLine(m, self, names))
  }
  rl.prompt()
  const show = (m: GroupMessage): void => {
    if (m.groupId !== group.id || shown.has(key(m))) return
    shown.add(key(m))
    say(groupLine(m, self, names))
  }
  const controller = new AbortController()
  const events = (async () => {
    for await (const live of liveEvents(dataDir, { client, connect: ApiClient.forDataDir, signal: controller.signal })) {
      if (live.event === 'reconnected') {
        client = live.client
        say('-- reconnected')
        for (const m of await client.groupHistory(group.id, { limit: 100 })) show(m)
      } else if (live.event === 'disconnected') {
        say(`-- ${terminalSafe(live.data.message, { indent: false })}`)
      } else if (live.event === 'group-message') {
        show(live.data)
      } else if (live.event === 'group-change' && live.data.id === group.id) {
        say(`-- ${groupSummary(live.data, self, names)}`)
      }
    }
  })().catch((err: Error) => { say(`-- ${terminalSafe(err.message, { indent: false })}`) })

  for await (const line of rl) {
    const text = line.trim()
    if (text === '/quit') break
    if (text === '') {
      rl.prompt()
      continue
    }
    try {
      const { body } = await client.sendGroup(group.id, { body: text })
      if ('seq' in body) shown.add(`${self} ${body.seq}`)
      say(`me: ${terminalSafe(text, { indent: false })}`)
    } catch (err: any) {
      say(`-- not sent: ${terminalSafe(String(err.message), { indent: false })}`)
    }
  }
  controller.abort()
  rl.close()
  await events
}
