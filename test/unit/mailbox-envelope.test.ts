import { Chacha20Poly1305 } from '@hpke/chacha20poly1305'
import { CipherSuite, HkdfSha256 } from '@hpke/core'
import { DhkemX25519HkdfSha256 } from '@hpke/dhkem-x25519'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { sha256 } from '@noble/hashes/sha2.js'
import { concat, fromString, toString } from 'uint8arrays'
import { describe, expect, it } from 'vitest'
import { MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES } from '../../protocols/im/constants.js'
import { ChatMessage } from '../../protocols/im/pb/im.js'
import {
  ENVELOPE_INFO_PREFIX, ENVELOPE_VERSION, InvalidEnvelopeError, MAX_ENVELOPE_BYTES, MAX_RECEIPT_ENTRIES, MAX_REPLY_RECORD_BYTES,
  SEALED_SIGNATURE_DOMAIN, envelopeKeyId, generateMailboxKeyPair, mailboxKeyId, openEnvelope, sealEnvelope
} from '../../protocols/mailbox/envelope.js'
import { Envelope, Sealed, Signed } from '../../protocols/mailbox/pb/mailbox.js'
import type { MailboxKeyPair, SealOptions } from '../../protocols/mailbox/envelope.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

interface Party { privateKey: PrivateKey, peerId: PeerId, mailbox: MailboxKeyPair }

async function party (): Promise<Party> {
  const privateKey = await generateKeyPair('Ed25519')
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), mailbox: await generateMailboxKeyPair() }
}

/** What `owner` holds: its mailbox private keys by key id. */
function keysOf (...pairs: MailboxKeyPair[]): (keyId: Uint8Array) => Uint8Array | undefined {
  const byId = new Map(pairs.map(p => [toString(mailboxKeyId(p.publicKey), 'hex'), p.privateKey]))
  return keyId => byId.get(toString(keyId, 'hex'))
}

const body = 'meet me at the old mill at noon'
const chat = ChatMessage.encode({ id: new Uint8Array(16).fill(7), seq: 3n, sentAt: 1_700_000_000_000n, body })
const createdAt = 1_700_000_000_123

describe('mailbox envelope', async () => {
  const alice = await party()
  const bob = await party()
  const carol = await party()

  const sealForBob = async (extra: Partial<SealOptions> = {}): Promise<Uint8Array> => sealEnvelope({
    senderKey: alice.privateKey, recipient: bob.peerId, recipientKey: bob.mailbox.publicKey, content: { message: chat }, createdAt, ...extra
  })
  const openAsBob = async (envelope: Uint8Array): ReturnType<typeof openEnvelope> =>
    openEnvelope(envelope, { recipient: bob.peerId, privateKeyFor: keysOf(bob.mailbox) })

  it('generates raw X25519 key pairs and 8-byte key ids', async () => {
    expect(bob.mailbox.publicKey).toHaveLength(32)
    expect(bob.mailbox.privateKey).toHaveLength(32)
    expect(mailboxKeyId(bob.mailbox.publicKey)).toEqual(sha256(bob.mailbox.publicKey).subarray(0, 8))
    expect(toString(carol.mailbox.publicKey, 'hex')).not.toBe(toString(bob.mailbox.publicKey, 'hex'))
  })

  it('round-trips a message, authenticating its sender', async () => {
    const envelope = await sealForBob()
    expect(envelopeKeyId(envelope)).toEqual(mailboxKeyId(bob.mailbox.publicKey))
    const opened = await openAsBob(envelope)
    expect(opened.sender.equals(alice.peerId)).toBe(true)
    expect(opened.recipient.equals(bob.peerId)).toBe(true)
    expect(opened.createdAt).toBe(createdAt)
    expect(opened.message?.body).toBe(body)
    expect(opened.message?.seq).toBe(3n)
    expect(opened.receipt).toBeUndefined()
    expect(opened.replyRecord).toBeUndefined()
  })

  it('round-trips a receipt with a reply record', async () => {
    const receipt = [{ id: new Uint8Array(16).fill(1), status: 0 }, { id: new Uint8Array(16).fill(2), status: 4 }]
    const replyRecord = new Uint8Array(300).fill(9)
    const opened = await openAsBob(await sealForBob({ content: { receipt }, replyRecord }))
    expect(opened.message).toBeUndefined()
    expect(opened.receipt).toEqual(receipt)
    expect(opened.replyRecord).toEqual(replyRecord)
  })

  it('round-trips a message with a reply record and a receipt without one', async () => {
    const replyRecord = new Uint8Array(MAX_REPLY_RECORD_BYTES).fill(3)
    expect((await openAsBob(await sealForBob({ replyRecord }))).replyRecord).toEqual(replyRecord)
    const opened = await openAsBob(await sealForBob({ content: { receipt: [{ id: new Uint8Array(16), status: 1 }] } }))
    expect(opened.receipt).toHaveLength(1)
    expect(opened.replyRecord).toBeUndefined()
  })

  it('opens with any key the recipient still holds (rotation)', async () => {
    const older = await generateMailboxKeyPair()
    const envelope = await sealForBob({ recipientKey: older.publicKey })
    const opened = await openEnvelope(envelope, { recipient: bob.peerId, privateKeyFor: keysOf(bob.mailbox, older) })
    expect(opened.message?.body).toBe(body)
    await expect(openAsBob(envelope)).rejects.toThrow(/mailbox key this node does not have/)
  })

  it('refuses every single-byte alteration', async () => {
    const envelope = await sealForBob({ replyRecord: new Uint8Array(20).fill(5) })
    let refused = 0
    for (let i = 0; i < envelope.length; i++) {
      for (const flip of [0x01, 0x80]) {
        const altered = envelope.slice()
        altered[i] ^= flip
        await expect(openAsBob(altered)).rejects.toBeInstanceOf(InvalidEnvelopeError)
        refused++
      }
    }
    expect(refused).toBe(envelope.length * 2)
    // and so is the envelope cut short or with a byte more
    await expect(openAsBob(envelope.subarray(0, envelope.length - 1))).rejects.toBeInstanceOf(InvalidEnvelopeError)
    await expect(openAsBob(concat([envelope, Uint8Array.of(0)]))).rejects.toBeInstanceOf(InvalidEnvelopeError)
  })

  it('refuses an envelope sealed for Bob when Carol opens it, even with Bob\'s key', async () => {
    const envelope = await sealForBob()
    await expect(openEnvelope(envelope, { recipient: carol.peerId, privateKeyFor: keysOf(carol.mailbox) }))
      .rejects.toThrow(/mailbox key this node does not have/)
    // bound to Bob's peer ID by HPKE's info, not only by the key
    await expect(openEnvelope(envelope, { recipient: carol.peerId, privateKeyFor: keysOf(bob.mailbox) }))
      .rejects.toThrow(/cannot decrypt/)
  })

  it('refuses garbage, oversize, unknown versions and non-canonical encodings, with a typed error', async () => {
    const envelope = await sealForBob()
    const decoded = Envelope.decode(envelope)
    await expect(openAsBob(new Uint8Array(0))).rejects.toThrow(/version/)
    await expect(openAsBob(new Uint8Array([0xff, 0xff, 0xff]))).rejects.toBeInstanceOf(InvalidEnvelopeError)
    await expect(openAsBob(new Uint8Array(MAX_ENVELOPE_BYTES + 1))).rejects.toThrow(/over 65536/)
    await expect(openAsBob(Envelope.encode({ ...decoded, version: 2 }))).rejects.toThrow(/unknown envelope version 2/)
    // an unknown field appended: same content, new bytes
    await expect(openAsBob(concat([envelope, Uint8Array.of(0x28, 0x01)]))).rejects.toThrow(/canonical/)
    await expect(openAsBob(Envelope.encode({ ...decoded, enc: decoded.enc.subarray(1) }))).rejects.toThrow(/encapsulated key/)
    // a host swapping in a key id the recipient has: the key id is the AEAD's aad
    const other = await generateMailboxKeyPair()
    const swapped = Envelope.encode({ ...decoded, keyId: mailboxKeyId(other.publicKey) as Uint8Array<ArrayBuffer> })
    await expect(openEnvelope(swapped, { recipient: bob.peerId, privateKeyFor: () => bob.mailbox.privateKey })).rejects.toThrow(/cannot decrypt/)
  })

  it('refuses to seal what breaks a bound', async () => {
    await expect(sealForBob({ content: { receipt: [] } })).rejects.toThrow(/1 to 256/)
    await expect(sealForBob({ content: { receipt: Array.from({ length: MAX_RECEIPT_ENTRIES + 1 }, () => ({ id: new Uint8Array(16), status: 0 })) } })).rejects.toThrow(/1 to 256/)
    await expect(sealForBob({ content: { receipt: [{ id: new Uint8Array(15), status: 0 }] } })).rejects.toThrow(/16 bytes/)
    await expect(sealForBob({ replyRecord: new Uint8Array(MAX_REPLY_RECORD_BYTES + 1) })).rejects.toThrow(/reply record/)
    await expect(sealForBob({ content: { message: new Uint8Array(MAX_ENVELOPE_BYTES) } })).rejects.toThrow(/over 65536/)
    await expect(sealForBob({ recipientKey: new Uint8Array(31) })).rejects.toThrow(/32 bytes/)
    await expect(sealForBob({ content: {} as any })).rejects.toThrow(/exactly one/)
  })

  it('fits the largest /im message with the largest reply record', async () => {
    const largest = ChatMessage.encode({
      id: new Uint8Array(16).fill(0xff),
      seq: 2n ** 64n - 1n,
      sentAt: 2n ** 64n - 1n,
      body: 'é'.repeat(MAX_BODY_BYTES / 2),
      contentType: 'x'.repeat(MAX_CONTENT_TYPE_BYTES),
      replyTo: new Uint8Array(16).fill(0xff)
    })
    const envelope = await sealForBob({ content: { message: largest }, replyRecord: new Uint8Array(MAX_REPLY_RECORD_BYTES), createdAt: Number.MAX_SAFE_INTEGER })
    expect(envelope.length).toBeLessThan(38_000)
    expect((await openAsBob(envelope)).message?.body).toHaveLength(MAX_BODY_BYTES / 2)
  })

  it('keeps the body and the sender out of the envelope bytes', async () => {
    const envelope = await sealForBob()
    const decoded = Envelope.decode(envelope)
    const haystacks = [envelope, decoded.ciphertext].map(b => toString(b, 'latin1'))
    const needles = [body, alice.peerId.toString(), toString(alice.peerId.toMultihash().bytes, 'latin1'),
      toString(alice.peerId.publicKey!.raw, 'latin1'), toString(bob.peerId.toMultihash().bytes, 'latin1')]
    for (const haystack of haystacks) {
      for (const needle of needles) expect(haystack.includes(needle)).toBe(false)
    }
  })

  describe('crafted by someone holding Bob\'s public mailbox key', () => {
    // a second X25519 KEM (pure JS, @hpke/dhkem-x25519) beside the envelope's own (WebCrypto, @hpke/core): what one seals the other opens
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() })

    /** Seals `signed` with `signature` to Bob's key and Bob's peer ID, as a sender would: only the content is crafted. */
    async function craft (signed: Signed, sign: (input: Uint8Array, signedBytes: Uint8Array) => Promise<Uint8Array>): Promise<Uint8Array> {
      const signedBytes = Signed.encode(signed)
      const signature = await sign(signed.recipient, signedBytes)
      const keyId = mailboxKeyId(bob.mailbox.publicKey)
      const { enc, ct } = await suite.seal({
        recipientPublicKey: await suite.kem.deserializePublicKey(bob.mailbox.publicKey),
        info: concat([fromString(ENVELOPE_INFO_PREFIX), bob.peerId.toMultihash().bytes])
      }, Sealed.encode({ signed: signedBytes, signature: signature as Uint8Array<ArrayBuffer> }), keyId)
      return Envelope.encode({ version: ENVELOPE_VERSION, keyId: keyId as Uint8Array<ArrayBuffer>, enc: new Uint8Array(enc), ciphertext: new Uint8Array(ct) })
    }

    const signedBy = (key: PrivateKey) => async (recipient: Uint8Array, signedBytes: Uint8Array): Promise<Uint8Array> =>
      key.sign(concat([fromString(SEALED_SIGNATURE_DOMAIN), Uint8Array.of(0), recipient, sha256(signedBytes)]))

    const content = (extra: Partial<Signed> = {}): Signed => ({
      sender: alice.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
      recipient: bob.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
      createdAt: BigInt(createdAt),
      message: chat,
      ...extra
    })

    it('opens when crafted by the rules (the helper is faithful)', async () => {
      expect((await openAsBob(await craft(content(), signedBy(alice.privateKey)))).sender.equals(alice.peerId)).toBe(true)
    })

    it('refuses a signature by another key than the sender\'s', async () => {
      const mallory = await generateKeyPair('Ed25519')
      await expect(openAsBob(await craft(content(), signedBy(mallory)))).rejects.toThrow(/signature does not verify/)
    })

    it('refuses a signature over another recipient or another domain', async () => {
      const wrongRecipient = async (_: Uint8Array, signedBytes: Uint8Array): Promise<Uint8Array> => signedBy(alice.privateKey)(carol.peerId.toMultihash().bytes, signedBytes)
      await expect(openAsBob(await craft(content(), wrongRecipient))).rejects.toThrow(/signature does not verify/)
      const wrongDomain = async (recipient: Uint8Array, signedBytes: Uint8Array): Promise<Uint8Array> =>
        alice.privateKey.sign(concat([fromString('parley-mailbox/1 other'), Uint8Array.of(0), recipient, sha256(signedBytes)]))
      await expect(openAsBob(await craft(content(), wrongDomain))).rejects.toThrow(/signature does not verify/)
    })

    it('refuses a Signed naming another recipient, sealed to Bob\'s key', async () => {
      // Alice's genuine envelope for Carol, re-sealed by Carol to Bob: Carol cannot make Bob believe Alice wrote to him
      const forCarol = content({ recipient: carol.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer> })
      await expect(openAsBob(await craft(forCarol, signedBy(alice.privateKey)))).rejects.toThrow(/names another recipient/)
    })

    it('refuses both or neither content, oversize receipts and reply records, bad senders', async () => {
      const sign = signedBy(alice.privateKey)
      await expect(openAsBob(await craft(content({ receipt: { entries: [{ id: new Uint8Array(16), status: 0 }] } }), sign))).rejects.toThrow(/exactly one/)
      await expect(openAsBob(await craft(content({ message: undefined }), sign))).rejects.toThrow(/exactly one/)
      const entries = Array.from({ length: MAX_RECEIPT_ENTRIES + 1 }, () => ({ id: new Uint8Array(16), status: 0 }))
      await expect(openAsBob(await craft(content({ message: undefined, receipt: { entries } }), sign))).rejects.toThrow(/undecodable|1 to 256/)
      await expect(openAsBob(await craft(content({ message: undefined, receipt: { entries: [{ id: new Uint8Array(8), status: 0 }] } }), sign))).rejects.toThrow(/16 bytes/)
      await expect(openAsBob(await craft(content({ replyRecord: new Uint8Array(MAX_REPLY_RECORD_BYTES + 1) }), sign))).rejects.toThrow(/reply record/)
      await expect(openAsBob(await craft(content({ message: new Uint8Array([0xff, 0xff]) }), sign))).rejects.toThrow(/not a ChatMessage/)
      await expect(openAsBob(await craft(content({ sender: new Uint8Array([1, 2, 3]) }), sign))).rejects.toThrow(/not a peer ID/)
      await expect(openAsBob(await craft(content({ createdAt: 2n ** 60n }), sign))).rejects.toThrow(/createdAt/)
    })
  })
})
