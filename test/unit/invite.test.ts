import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { decodeInvite, encodeInvite, INVITE_PREFIX, MAX_INVITE_ADDRS, MAX_INVITE_LENGTH, readInvite } from '../../node/invite.js'
import { generateMailboxKeyPair } from '../../protocols/mailbox/envelope.js'
import { MAX_MAILBOX_RECORD_BYTES, signMailboxRecord } from '../../protocols/mailbox/record.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** An invite as anyone could write one, whatever it carries. */
function rawInvite (p: string, a: unknown[]): string {
  return INVITE_PREFIX + Buffer.from(JSON.stringify({ p, a })).toString('base64url')
}

describe('invites', async () => {
  const bob = await peer()
  const mallory = await peer()
  const relay = await peer()
  const circuit = (i: number): string => `/ip4/8.8.8.${i}/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${bob}`

  it('round-trip the peer ID and its addresses, each ending in the peer', () => {
    const addrs = [`/ip4/127.0.0.1/tcp/4001/p2p/${bob}`, circuit(1), `${circuit(2).replace(`/p2p/${bob}`, '')}/webrtc/p2p/${bob}`]
    const invite = encodeInvite(bob, addrs.map(a => multiaddr(a)))
    const decoded = decodeInvite(invite)
    expect(decoded.peerId.equals(bob)).toBe(true)
    expect(decoded.addrs.map(a => a.toString()).sort()).toEqual([...addrs].sort())
    // the peer ID is written once, not once per address
    expect(Buffer.from(invite.slice(INVITE_PREFIX.length), 'base64url').toString().split(bob.toString())).toHaveLength(2)
  })

  it('read one with surrounding white space, as pasted', () => {
    expect(decodeInvite(`  ${encodeInvite(bob, [multiaddr(circuit(1))])}\n`).addrs.map(a => a.toString())).toEqual([circuit(1)])
  })

  it('leave out addresses that lead to another peer', () => {
    const invite = rawInvite(bob.toString(), [`/ip4/127.0.0.1/tcp/4001/p2p/${mallory}`, circuit(1), `/ip4/8.8.4.4/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${mallory}`])
    expect(decodeInvite(invite).addrs.map(a => a.toString())).toEqual([circuit(1)])
  })

  it('refuse one over the length limit, saying so, before reading it', () => {
    const huge = INVITE_PREFIX + 'A'.repeat(1024 * 1024)
    expect(() => decodeInvite(huge)).toThrow(expect.objectContaining({ name: 'InvalidInviteError', message: expect.stringMatching(`over the ${MAX_INVITE_LENGTH}-character limit`) }))
  })

  it('refuse one with too many addresses, saying so', () => {
    const invite = rawInvite(bob.toString(), Array.from({ length: MAX_INVITE_ADDRS + 1 }, (_, i) => `/ip4/127.0.0.1/tcp/${i + 1}`))
    expect(invite.length).toBeLessThan(MAX_INVITE_LENGTH)
    expect(() => decodeInvite(invite)).toThrow(expect.objectContaining({ name: 'InvalidInviteError', message: expect.stringMatching(`${MAX_INVITE_ADDRS + 1} addresses, over the limit of ${MAX_INVITE_ADDRS}`) }))
  })

  it('written for a node with many addresses stay within the limits, public and relayed ones kept', () => {
    const addrs = [
      ...Array.from({ length: 20 }, (_, i) => `/ip4/10.0.0.${i + 1}/tcp/4001/p2p/${bob}`),
      ...Array.from({ length: 20 }, (_, i) => circuit(i + 1)),
      `/ip4/9.9.9.9/tcp/4001/p2p/${bob}`
    ]
    const invite = encodeInvite(bob, addrs.map(a => multiaddr(a)))
    expect(invite.length).toBeLessThanOrEqual(MAX_INVITE_LENGTH)
    const kept = decodeInvite(invite).addrs.map(a => a.toString())
    expect(kept).toHaveLength(MAX_INVITE_ADDRS)
    expect(kept[0]).toBe(`/ip4/9.9.9.9/tcp/4001/p2p/${bob}`)
    expect(kept.slice(1)).toEqual(Array.from({ length: MAX_INVITE_ADDRS - 1 }, (_, i) => circuit(i + 1)))
  })
})

describe('invites carrying a mailbox record', async () => {
  const DAY = 24 * 60 * 60_000
  const bobKey = await generateKeyPair('Ed25519')
  const bob = peerIdFromPrivateKey(bobKey)
  const malloryKey = await generateKeyPair('Ed25519')
  const relay = await peer()
  const mailboxKey = await generateMailboxKeyPair()
  const now = Date.now()
  const circuit = `/ip4/8.8.8.8/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${bob}`

  const record = async (extra: { seq?: number, expiresAt?: number, by?: PrivateKey } = {}): Promise<Uint8Array> => {
    const seq = extra.seq ?? now
    return signMailboxRecord(extra.by ?? bobKey, {
      seq,
      keys: [{ publicKey: mailboxKey.publicKey, expiresAt: extra.expiresAt ?? seq + 14 * DAY }],
      hosts: [{ peerId: relay, addrs: [multiaddr('/ip4/8.8.8.8/tcp/4001')] }]
    })
  }
  /** An invite as anyone could write one, with any `mailbox` value. */
  const rawInvite = (mailbox: unknown): string =>
    INVITE_PREFIX + Buffer.from(JSON.stringify({ p: bob.toString(), a: [circuit], mailbox })).toString('base64url')

  it('round-trip the record, verified', async () => {
    const bytes = await record()
    const invite = encodeInvite(bob, [multiaddr(circuit)], { mailboxRecord: bytes })
    const read = await readInvite(invite)
    expect(read.peerId.equals(bob)).toBe(true)
    expect(read.addrs.map(a => a.toString())).toEqual([circuit])
    expect(read.mailbox?.bytes).toEqual(bytes)
    expect(read.mailbox?.keys.map(k => k.publicKey)).toEqual([mailboxKey.publicKey])
    expect(read.mailbox?.hosts[0].peerId.equals(relay)).toBe(true)
    // the synchronous reader still reads it, without the record
    expect(decodeInvite(invite).peerId.equals(bob)).toBe(true)
  })

  it('without one stay valid, as old invites are', async () => {
    const read = await readInvite(encodeInvite(bob, [multiaddr(circuit)]))
    expect(read.mailbox).toBeUndefined()
    expect(read.addrs).toHaveLength(1)
  })

  it('keep an old record while one of its keys lives; drop it, not the invite, once none does', async () => {
    const old = await record({ seq: now - 10 * DAY })
    expect((await readInvite(encodeInvite(bob, [multiaddr(circuit)], { mailboxRecord: old }))).mailbox?.seq).toBe(now - 10 * DAY)
    const dead = await record({ seq: now - 20 * DAY })
    const read = await readInvite(encodeInvite(bob, [multiaddr(circuit)], { mailboxRecord: dead }))
    expect(read.mailbox).toBeUndefined()
    expect(read.addrs).toHaveLength(1)
  })

  it('are refused when the record is not the peer\'s, altered, or not a record, saying so', async () => {
    const invalid = expect.objectContaining({ name: 'InvalidInviteError', message: expect.stringMatching(/mailbox record/) })
    // mallory's record in bob's invite: mallory would receive bob's mail
    await expect(readInvite(encodeInvite(bob, [multiaddr(circuit)], { mailboxRecord: await record({ by: malloryKey }) }))).rejects.toThrow(invalid)
    const altered = await record()
    altered[altered.length - 10] ^= 1
    await expect(readInvite(encodeInvite(bob, [multiaddr(circuit)], { mailboxRecord: altered }))).rejects.toThrow(invalid)
    await expect(readInvite(rawInvite('AAAA'))).rejects.toThrow(invalid)
    await expect(readInvite(encodeInvite(bob, [], { mailboxRecord: await record({ seq: now + 2 * DAY }) }))).rejects.toThrow(invalid)
  })

  it('are refused, even by the synchronous reader, when the record is not base64url or too large', async () => {
    for (const mailbox of [42, '', 'not base64!', null]) {
      expect(() => decodeInvite(rawInvite(mailbox))).toThrow(expect.objectContaining({ name: 'InvalidInviteError' }))
      await expect(readInvite(rawInvite(mailbox))).rejects.toThrow(expect.objectContaining({ name: 'InvalidInviteError' }))
    }
    const huge = rawInvite(Buffer.alloc(MAX_MAILBOX_RECORD_BYTES + 1).toString('base64url'))
    expect(huge.length).toBeLessThanOrEqual(MAX_INVITE_LENGTH)
    expect(() => decodeInvite(huge)).toThrow(/mailbox record is 4097 bytes, over the limit of 4096/)
  })

  it('with the largest record and many addresses stay within the length limit, the record kept', async () => {
    const big = new Uint8Array(MAX_MAILBOX_RECORD_BYTES).fill(0xab)
    const addrs = Array.from({ length: 40 }, (_, i) => multiaddr(`/ip4/8.8.8.${i + 1}/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${bob}`))
    const invite = encodeInvite(bob, addrs, { mailboxRecord: big })
    expect(invite.length).toBeLessThanOrEqual(MAX_INVITE_LENGTH)
    expect(decodeInvite(invite).addrs).toHaveLength(MAX_INVITE_ADDRS)
    expect(() => encodeInvite(bob, [], { mailboxRecord: new Uint8Array(MAX_MAILBOX_RECORD_BYTES + 1) })).toThrow(RangeError)
  })
})
