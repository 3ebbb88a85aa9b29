import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { MAX_PAYLOAD_BYTES } from '../../protocols/group/constants.js'
import { decodePayload, GroupPayload, InvalidGroupPayloadError, signMessage, signOp, verifyMessage, verifyOp } from '../../protocols/group/codec.js'
import type { GroupMessage, Op } from '../../protocols/group/codec.js'

describe('group payload codec', async () => {
  const key = await generateKeyPair('Ed25519')
  const me = peerIdFromPrivateKey(key).toMultihash().bytes as Uint8Array<ArrayBuffer>
  const group = new Uint8Array(32).fill(9)
  const message = (overrides: Partial<GroupMessage> = {}): GroupMessage => ({
    group, sender: me, id: new Uint8Array(16).fill(1), seq: 1n, lamport: 2n, heads: [group], sentAt: 5n, body: 'hi', ...overrides
  })
  const op = (overrides: Partial<Op> = {}): Op => ({ group, author: me, lamport: 2n, parents: [group], createdAt: 1n, rename: 'new name', ...overrides })

  it('reads a signed group message and what it says', async () => {
    const read = await verifyMessage(await signMessage(key, message({ contentType: 'text/markdown; charset=utf-8' })), 32_768)
    expect(read).toMatchObject({ sender: peerIdFromPrivateKey(key).toString(), seq: 1, lamport: 2, body: 'hi', contentType: 'text/markdown; charset=utf-8', heads: ['09'.repeat(32)] })
  })

  it('refuses a message out of the spec\'s bounds (§5.2 rule 1), whatever its signature', async () => {
    const bad: Array<Partial<GroupMessage>> = [
      { group: new Uint8Array(31) }, { id: new Uint8Array(15) }, { seq: 0n }, { seq: 2n ** 53n }, { heads: [] },
      { heads: Array.from({ length: 17 }, (_, i) => new Uint8Array(32).fill(i)) }, { heads: [group, group] }, { heads: [new Uint8Array(5)] },
      { body: '' }, { body: 'x'.repeat(32_769) }, { body: 'half \ud800 emoji' }, { contentType: 'not a media type' }, { contentType: `text/${'x'.repeat(130)}` },
      { sender: new Uint8Array([1, 2, 3]) }
    ]
    for (const overrides of bad) {
      await expect(verifyMessage(await signMessage(key, message(overrides)), 32_768), JSON.stringify(Object.keys(overrides))).rejects.toThrow(InvalidGroupPayloadError)
    }
  })

  it('refuses an op out of the spec\'s bounds (§4.2)', async () => {
    const bad: Array<Partial<Op>> = [
      { add: me }, // two kinds
      { rename: undefined }, // none
      { parents: [] },
      { group: new Uint8Array(0) },
      { rename: '' }, { rename: '   ' }, { rename: 'x'.repeat(129) }, { rename: 'bell\u0007' },
      { leave: false, rename: undefined },
      { lamport: 2n ** 53n },
      { rename: undefined, create: { name: 'g', members: [], nonce: new Uint8Array(16) } }, // a create with a group and parents
      { group: new Uint8Array(0), parents: [], lamport: 1n, rename: undefined, create: { name: 'g', members: [me], nonce: new Uint8Array(16) } }, // its author as a member
      { group: new Uint8Array(0), parents: [], lamport: 1n, rename: undefined, create: { name: 'g', members: [], nonce: new Uint8Array(8) } }
    ]
    for (const overrides of bad) {
      await expect(verifyOp(await signOp(key, op(overrides))), JSON.stringify(Object.keys(overrides))).rejects.toThrow(InvalidGroupPayloadError)
    }
    await expect(verifyOp(await signOp(key, op()))).resolves.toMatchObject({ kind: 'rename', name: 'new name' })
  })

  it('refuses a payload that is empty, does not decode, or is over its limit', () => {
    expect(() => decodePayload(GroupPayload.encode({ ops: [] }))).toThrow(/empty/)
    expect(() => decodePayload(Uint8Array.of(0x0a, 0xff))).toThrow(InvalidGroupPayloadError)
    expect(() => decodePayload(new Uint8Array(MAX_PAYLOAD_BYTES + 1))).toThrow(/over/)
  })
})
