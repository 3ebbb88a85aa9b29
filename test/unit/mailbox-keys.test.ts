import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { ChatMessage } from '../../protocols/im/pb/im.js'
import { mailboxKeyId, openEnvelope, sealEnvelope } from '../../protocols/mailbox/envelope.js'
import { DEFAULT_KEEP_FOR, DEFAULT_ROTATE_EVERY, MAILBOX_KEYS_FILE, MailboxKeys } from '../../node/mailbox/keys.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import { useTempDirs } from '../fixtures/dirs.js'

const DAY = 24 * 60 * 60_000

describe('mailbox keys', () => {
  const tempDir = useTempDirs()

  it('start with one current key, published until two rotation periods from now', async () => {
    const clock = new FakeClock()
    const keys = await MailboxKeys.open({}, { clock })
    const current = keys.current()
    expect(current.publicKey).toHaveLength(32)
    expect(current.privateKey).toHaveLength(32)
    expect(current.createdAt).toBe(clock.now())
    expect(current.expiresAt).toBe(clock.now() + 2 * DEFAULT_ROTATE_EVERY)
    expect(keys.published()).toEqual([{ publicKey: current.publicKey, expiresAt: current.expiresAt }])
    expect(keys.privateKeyFor(mailboxKeyId(current.publicKey))).toEqual(current.privateKey)
    expect(keys.privateKeyFor(new Uint8Array(8))).toBeUndefined()
  })

  it('rotate when due, publish the live keys newest first, and open mail sealed to an older one', async () => {
    const clock = new FakeClock()
    const keys = await MailboxKeys.open({}, { clock })
    const first = keys.current()
    clock.advance(DEFAULT_ROTATE_EVERY - 1)
    expect(await keys.rotateIfDue()).toBe(false)
    clock.advance(1)
    expect(await keys.rotateIfDue()).toBe(true)
    const second = keys.current()
    expect(second.publicKey).not.toEqual(first.publicKey)
    expect(keys.published().map(k => k.publicKey)).toEqual([second.publicKey, first.publicKey])
    expect(await keys.rotateIfDue()).toBe(false)

    // a sender with last week's record seals to the first key: still opened
    const alice = await generateKeyPair('Ed25519')
    const bob = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const message = ChatMessage.encode({ id: new Uint8Array(16), seq: 1n, sentAt: 1n, body: 'hi' })
    const envelope = await sealEnvelope({ senderKey: alice, recipient: bob, recipientKey: first.publicKey, content: { message }, createdAt: clock.now() })
    expect((await openEnvelope(envelope, { recipient: bob, privateKeyFor: id => keys.privateKeyFor(id) })).message?.body).toBe('hi')

    // past its expiry the first key is no longer published, but still opens mail
    clock.advance(DEFAULT_ROTATE_EVERY)
    expect(await keys.rotateIfDue()).toBe(true)
    expect(keys.published().map(k => k.publicKey)).toEqual([keys.current().publicKey, second.publicKey])
    expect(keys.privateKeyFor(mailboxKeyId(first.publicKey))).toEqual(first.privateKey)
  })

  it('delete a private key keepFor after its key expired, never the current one', async () => {
    const clock = new FakeClock()
    const rotateEvery = DAY
    const keepFor = 3 * DAY
    const keys = await MailboxKeys.open({ rotateEvery, keepFor }, { clock })
    const first = keys.current()
    // first expires at +2 days, is deleted at +5 days
    for (let day = 1; day <= 4; day++) {
      clock.advance(DAY)
      await keys.rotateIfDue()
    }
    expect(keys.privateKeyFor(mailboxKeyId(first.publicKey))).toBeDefined()
    clock.advance(DAY)
    await keys.rotateIfDue()
    expect(keys.privateKeyFor(mailboxKeyId(first.publicKey))).toBeUndefined()

    // a node asleep for a year: the current key is replaced, not lost before its successor exists
    const asleep = await MailboxKeys.open({ rotateEvery, keepFor }, { clock })
    const before = asleep.current()
    clock.advance(365 * DAY)
    expect(await asleep.rotateIfDue()).toBe(true)
    expect(asleep.current().publicKey).not.toEqual(before.publicKey)
    expect(asleep.published()).toHaveLength(1)
    expect(asleep.privateKeyFor(mailboxKeyId(before.publicKey))).toBeUndefined()
  })

  it('persist in mailbox-keys.json, mode 0600, across restarts, with no temporary file left', async () => {
    const dataDir = join(await tempDir(), 'data')
    const clock = new FakeClock()
    const keys = await MailboxKeys.open({ dataDir }, { clock })
    const first = keys.current()
    const file = join(dataDir, MAILBOX_KEYS_FILE)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700)

    const again = await MailboxKeys.open({ dataDir }, { clock })
    expect(again.current()).toEqual(first)

    clock.advance(DEFAULT_ROTATE_EVERY)
    expect(await again.rotateIfDue()).toBe(true)
    const reopened = await MailboxKeys.open({ dataDir }, { clock })
    expect(reopened.current()).toEqual(again.current())
    expect(reopened.privateKeyFor(mailboxKeyId(first.publicKey))).toEqual(first.privateKey)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect(await readdir(dataDir)).toEqual([MAILBOX_KEYS_FILE])
  })

  it('rotate when reopened after the rotation was due, and delete old keys from the file too', async () => {
    const dataDir = join(await tempDir(), 'data')
    const clock = new FakeClock()
    const first = (await MailboxKeys.open({ dataDir }, { clock })).current()
    clock.advance(2 * DEFAULT_ROTATE_EVERY + DEFAULT_KEEP_FOR)
    const keys = await MailboxKeys.open({ dataDir }, { clock })
    expect(keys.current().createdAt).toBe(clock.now())
    expect(keys.privateKeyFor(mailboxKeyId(first.publicKey))).toBeUndefined()
    expect(JSON.parse(await readFile(join(dataDir, MAILBOX_KEYS_FILE), 'utf8')).keys).toHaveLength(1)
  })

  it('refuse a damaged file, naming it, and leave it as it was', async () => {
    const dataDir = join(await tempDir(), 'data')
    const clock = new FakeClock()
    await MailboxKeys.open({ dataDir }, { clock })
    const file = join(dataDir, MAILBOX_KEYS_FILE)
    const good = JSON.parse(await readFile(file, 'utf8'))
    const damaged = [
      '{"version":1,"keys":[',
      '',
      JSON.stringify({ ...good, version: 2 }),
      JSON.stringify({ ...good, keys: [] }),
      JSON.stringify({ ...good, keys: [{ ...good.keys[0], privateKey: good.keys[0].privateKey.slice(1) }] }),
      JSON.stringify({ ...good, keys: [{ ...good.keys[0], publicKey: good.keys[0].publicKey.replace(/.$/, '+') }] }),
      JSON.stringify({ ...good, keys: [{ ...good.keys[0], createdAt: -1 }] }),
      JSON.stringify({ ...good, keys: [null] })
    ]
    for (const text of damaged) {
      await writeFile(file, text)
      await expect(MailboxKeys.open({ dataDir }, { clock })).rejects.toThrow(expect.objectContaining({
        name: 'MailboxKeysFileError',
        message: expect.stringContaining(file)
      }))
      expect(await readFile(file, 'utf8')).toBe(text)
    }
  })
})
