import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { describe, expect, it } from 'vitest'
import { generateMailboxKeyPair } from '../../protocols/mailbox/envelope.js'
import { MailboxRecordPublisher } from '../../protocols/mailbox/publisher.js'
import { MAILBOX_RECORD_VALIDITY, mailboxRecordKey, signMailboxRecord } from '../../protocols/mailbox/record.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { MailboxRecordPublisherComponents } from '../../protocols/mailbox/publisher.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

const DAY = 24 * 60 * 60_000
const log = Object.assign(() => {}, { error: () => {}, trace: () => {}, newScope: () => log, enabled: false })
const logger = { forComponent: () => log }

interface Put { key: Uint8Array, value: Uint8Array }

/** A content routing whose puts are recorded (and fail while `failing`), and whose `next()` resolves at the next put. */
function routing (): { components: MailboxRecordPublisherComponents, puts: Put[], next: () => Promise<Put>, failing: { on: boolean } } {
  const puts: Put[] = []
  const failing = { on: false }
  let waiters: Array<(put: Put) => void> = []
  const components = {
    logger,
    contentRouting: {
      put: async (key: Uint8Array, value: Uint8Array) => {
        const put = { key, value }
        const woken = waiters
        waiters = []
        woken.forEach(w => { w(put) })
        if (failing.on) throw new Error('no DHT servers')
        puts.push(put)
      },
      get: async () => { throw new Error('not in this test') }
    }
  } as unknown as MailboxRecordPublisherComponents
  return { components, puts, failing, next: async () => new Promise(resolve => { waiters.push(resolve) }) }
}

async function owner (): Promise<{ privateKey: PrivateKey, peerId: PeerId }> {
  const privateKey = await generateKeyPair('Ed25519')
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
}

describe('mailbox record publisher', async () => {
  const bob = await owner()
  const mailboxKey = await generateMailboxKeyPair()
  const recordAt = async (seq: number, who = bob, by = who.privateKey): Promise<Uint8Array> => {
    const bytes = await signMailboxRecord(by, { seq, keys: [{ publicKey: mailboxKey.publicKey, expiresAt: seq + 14 * DAY }], hosts: [] })
    return bytes
  }

  it('publishes soon after start, again on every interval and soon after a change', async () => {
    const clock = new FakeClock()
    const { components, puts, next } = routing()
    let seq = clock.now()
    const publisher = new MailboxRecordPublisher({ ...components, clock }, {
      source: { record: async () => recordAt(seq) }, publishDelay: 1000, republishInterval: 60_000
    })
    publisher.start()
    let put = next()
    clock.advance(999)
    expect(puts).toHaveLength(0)
    clock.advance(1)
    expect(uint8ArrayToString((await put).key)).toBe(`/parley-mailbox/${bob.peerId.toString()}`)
    expect((await put).key).toEqual(mailboxRecordKey(bob.peerId))
    expect(publisher.lastPublished).toBe(clock.now())

    put = next()
    clock.advance(60_000)
    await put
    expect(puts).toHaveLength(2)

    // a burst of changes makes one publish, with the record as it is then
    put = next()
    seq = clock.now()
    publisher.changed()
    clock.advance(500)
    publisher.changed()
    clock.advance(1000)
    expect((await put).value).toEqual(await recordAt(seq))
    expect(puts).toHaveLength(3)

    publisher.stop()
    expect(clock.pending).toBe(0)
  })

  it('retries a failed publish with a doubling delay, capped at the interval', async () => {
    const clock = new FakeClock()
    // each timer the publisher sets, as it sets it: the retry delays it chose
    let timerSet: (ms: number) => void = () => {}
    const setTimeout = clock.setTimeout
    clock.setTimeout = (fn, ms) => {
      const timer = setTimeout(fn, ms)
      timerSet(ms)
      return timer
    }
    const nextTimer = async (): Promise<number> => new Promise(resolve => { timerSet = resolve })
    const { components, puts, next, failing } = routing()
    const publisher = new MailboxRecordPublisher({ ...components, clock }, {
      source: { record: async () => recordAt(clock.now()) }, publishDelay: 0, republishInterval: 10_000, retryDelay: 2000
    })
    failing.on = true
    let timer = nextTimer()
    publisher.start()
    expect(await timer).toBe(0)
    const retries: number[] = []
    for (let attempt = 0; attempt < 5; attempt++) {
      const put = next()
      timer = nextTimer()
      clock.advance(attempt === 0 ? 0 : retries[retries.length - 1])
      await put
      retries.push(await timer)
    }
    expect(retries).toEqual([2000, 4000, 8000, 10_000, 10_000])
    failing.on = false
    const put = next()
    timer = nextTimer()
    clock.advance(10_000)
    await put
    // back to the plain interval once a publish succeeds
    expect(await timer).toBe(10_000)
    expect(puts).toHaveLength(1)
    publisher.stop()
  })

  it('publishes nothing while the source has no record', async () => {
    const clock = new FakeClock()
    const { components, puts } = routing()
    const publisher = new MailboxRecordPublisher({ ...components, clock }, { source: { record: async () => undefined } })
    expect(await publisher.publish()).toBe(false)
    expect(puts).toHaveLength(0)
  })

  it('refuses to publish a broken record of its own', async () => {
    const clock = new FakeClock()
    const { components, puts } = routing()
    const stale = await recordAt(clock.now() - MAILBOX_RECORD_VALIDITY - 1)
    const publisher = new MailboxRecordPublisher({ ...components, clock }, { source: { record: async () => stale } })
    await expect(publisher.publish()).rejects.toThrow(/record expired/)
    expect(puts).toHaveLength(0)
  })

  describe('lookup', () => {
    /** A lookup against a DHT that reports `answers` as it finds them and then fails, as kad-dht's get does when a correction is refused. */
    async function lookupWith (target: PeerId, answers: Uint8Array[], clock = new FakeClock(Date.now())): ReturnType<MailboxRecordPublisher['lookup']> {
      const components = {
        logger,
        clock,
        contentRouting: {
          put: async () => {},
          get: async (_key: Uint8Array, options: { onProgress?(evt: unknown): void }) => {
            for (const value of answers) options.onProgress?.(new CustomEvent('kad-dht:query:value', { detail: { value } }))
            throw new Error('Could not send correction')
          }
        }
      } as unknown as MailboxRecordPublisherComponents
      return new MailboxRecordPublisher(components, { source: { record: async () => undefined } }).lookup(target)
    }

    it('uses the newest valid answer, ignoring expired, forged and foreign ones, even when the DHT get fails', async () => {
      const mallory = await owner()
      const now = Date.now()
      const newest = await recordAt(now)
      const found = await lookupWith(bob.peerId, [
        await recordAt(now - 60_000),
        await recordAt(now - MAILBOX_RECORD_VALIDITY - 60_000),
        newest,
        await recordAt(now + 10_000, bob, mallory.privateKey),
        await recordAt(now + 20_000, mallory),
        new Uint8Array([1, 2, 3])
      ])
      expect(found?.seq).toBe(now)
      expect(found?.bytes).toEqual(newest)
      expect(found?.peerId.equals(bob.peerId)).toBe(true)
      expect(found?.keys[0].publicKey).toEqual(mailboxKey.publicKey)
    })

    it('finds nothing when no answer is valid', async () => {
      expect(await lookupWith(bob.peerId, [await recordAt(Date.now() - MAILBOX_RECORD_VALIDITY - 60_000)])).toBeUndefined()
      expect(await lookupWith(bob.peerId, [])).toBeUndefined()
    })
  })
})
