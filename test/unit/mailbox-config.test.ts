import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadRelayConfig, resolveRelayConfig } from '../../relay/config.js'
import { MAILBOX_DEFAULTS } from '../../relay/mailbox/limits.js'
import { ROOT } from '../fixtures/processes.js'

function message (fn: () => unknown): string {
  try {
    fn()
  } catch (err: any) {
    return err.message
  }
  throw new Error('expected an error')
}

describe('relay config: the mailbox section', () => {
  it('serves mailboxes by default, with the limits of relay/mailbox/limits.ts', () => {
    expect(resolveRelayConfig({}).mailbox).toEqual({ ...MAILBOX_DEFAULTS, enabled: true })
    expect(resolveRelayConfig({ mailbox: { maxEnvelopesPerMailbox: 10 } }).mailbox).toMatchObject({ enabled: true, maxEnvelopesPerMailbox: 10, maxMailboxes: 10_000 })
  })

  it('spells out every mailbox default in the sample config file', async () => {
    const { config } = await loadRelayConfig({ config: join(ROOT, 'relay/config.sample.json') }, {})
    expect(resolveRelayConfig(config).mailbox).toEqual({ ...MAILBOX_DEFAULTS, enabled: true })
  })

  it('is turned off by --no-mailbox or PARLEY_MAILBOX=false, the flag over the environment', async () => {
    const fromFlag = await loadRelayConfig({ mailbox: false }, {})
    expect(fromFlag.config.mailbox?.enabled).toBe(false)
    expect(fromFlag.origins.get('mailbox.enabled')).toBe('--no-mailbox')
    const fromEnv = await loadRelayConfig({ mailbox: true }, { PARLEY_MAILBOX: 'false' })
    expect(fromEnv.config.mailbox?.enabled).toBe(false)
    expect(fromEnv.origins.get('mailbox.enabled')).toBe('environment variable PARLEY_MAILBOX')
    // commander's `mailbox: true` when the flag is absent sets nothing
    expect((await loadRelayConfig({ mailbox: true }, {})).config.mailbox).toBeUndefined()
  })

  it('refuses a share that is not a percentage, envelopes over the protocol\'s 64 KiB, and unknown keys', () => {
    expect(message(() => resolveRelayConfig({ mailbox: { depositorSharePercent: 150 } }))).toContain('mailbox.depositorSharePercent: must be a percentage, 1 to 100')
    expect(message(() => resolveRelayConfig({ mailbox: { maxEnvelopeBytes: 100_000 } }))).toContain('mailbox.maxEnvelopeBytes: must be at most 65536')
    expect(message(() => resolveRelayConfig({ mailbox: { maxMailboxes: 0 } }))).toContain('mailbox.maxMailboxes: must be a positive integer')
    expect(message(() => resolveRelayConfig({ mailbox: { maxMailbox: 5 } as any }))).toContain('mailbox.maxMailbox: unknown key')
  })
})
