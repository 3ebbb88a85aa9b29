// `parley group …` and `parley chat <group>` against real daemons: three
// members, the group made and written to from the command line, a typed line
// in a terminal (tmux) reaching the others, each line showing who wrote it.
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { CLI, NODE, useProcesses } from '../fixtures/processes.js'
import { openTerminal } from '../fixtures/tmux.js'
import { until } from '../fixtures/wait.js'
import { startDaemonProcess } from './daemon.js'

describe('parley group and parley chat <group>', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('creates a group, sends to it, lists its history; a line typed in chat reaches the others, with who wrote each line', async () => {
    const [alice, bob, carol] = await Promise.all([startDaemonProcess(await tempDir()), startDaemonProcess(await tempDir()), startDaemonProcess(await tempDir())])
    const invite = async (d: typeof alice): Promise<string> => (await d.cli(['invite'])).stdout.trim()
    await alice.cli(['contacts', 'add', 'bob', await invite(bob)])
    await alice.cli(['contacts', 'add', 'carol', await invite(carol)])
    await bob.cli(['contacts', 'add', 'alice', await invite(alice)])
    await bob.cli(['contacts', 'add', 'carol', await invite(carol)])
    await carol.cli(['contacts', 'add', 'alice', await invite(alice)])
    await carol.cli(['contacts', 'add', 'bob', await invite(bob)])

    const created = await alice.cli(['group', 'create', 'family', 'bob', 'carol', '--json'])
    expect(created.code).toBe(0)
    const group = JSON.parse(created.stdout)
    expect(group).toMatchObject({ name: 'family', member: true })
    expect(group.members).toHaveLength(3)
    for (const d of [bob, carol]) {
      await until(async () => JSON.parse((await d.cli(['group', 'ls', '--json'])).stdout).length === 1, { every: 200, timeout: 30_000, what: 'the group to reach every member' })
    }
    // members by contact name, the admin marked *
    const listed = (await bob.cli(['group', 'ls'])).stdout
    expect(listed).toMatch(/^family {2}[0-9a-f]{12}… {2}3 members: /)
    expect(listed.split(': ')[1].trim().split(', ').sort()).toEqual(['alice*', 'carol', 'me'])

    const sent = await alice.cli(['group', 'send', 'family', 'dinner at 8?', '--json'])
    expect(sent.code).toBe(0)
    expect(JSON.parse(sent.stdout).recipients.map((r: any) => r.status)).toEqual(['delivered', 'delivered'])

    const terminal = await openTerminal(`${NODE} ${CLI} --data-dir ${bob.dataDir} chat family`, { columns: 160, rows: 40 })
    await terminal.shows(/\[family · 3\] >/)
    await terminal.shows(/alice: dinner at 8\?/)
    await terminal.keys('yes, see you there', 'Enter')
    await terminal.shows(/me: yes, see you there/)
    for (const d of [alice, carol]) {
      await until(async () => JSON.parse((await d.cli(['group', 'history', 'family', '--json'])).stdout).length === 2, { every: 200, timeout: 30_000, what: 'the typed line to reach the others' })
    }
    const history = await carol.cli(['group', 'history', 'family'])
    expect(history.stdout).toMatch(/alice: dinner at 8\?\n.*bob: yes, see you there/)
    // a line from carol appears in bob's chat, named
    expect((await carol.cli(['group', 'send', group.id, 'count me in'])).code).toBe(0)
    await terminal.shows(/carol: count me in/)
    await terminal.keys('/quit', 'Enter')
    await terminal.ended()

    // a member who is no admin cannot change the membership; the admin can
    const refused = await bob.cli(['group', 'remove', 'family', 'carol'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/not allowed/)
    expect((await alice.cli(['group', 'remove', 'family', 'carol'])).code).toBe(0)
    await until(async () => JSON.parse((await carol.cli(['group', 'ls', '--json'])).stdout)[0].member === false, { every: 200, timeout: 30_000, what: 'carol to learn she was removed' })
    // one-to-one conversations know nothing of the group
    expect(JSON.parse((await carol.cli(['ls', '--json'])).stdout)).toEqual([])
  })
})
