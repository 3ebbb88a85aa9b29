/**
 * Builds and signs this node's own membership ops, and returns each as a
 * peer would read it (verified by the same code that checks everyone's).
 */
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { fromHex, signOp, verifyOp } from '../../protocols/group/codec.js'
import type { VerifiedOp } from '../../protocols/group/codec.js'
import type { Op } from '../../protocols/group/pb/group.js'
import type { PrivateKey } from '@libp2p/interface'

export type OpChange =
  | { kind: 'add' | 'remove' | 'add-admin' | 'remove-admin', target: string }
  | { kind: 'leave' }
  | { kind: 'rename', name: string }

function peerBytes (peer: string): Uint8Array<ArrayBuffer> {
  return peerIdFromString(peer).toMultihash().bytes as Uint8Array<ArrayBuffer>
}

export async function createOp (key: PrivateKey, name: string, members: string[], nonce: Uint8Array<ArrayBuffer>, now: number): Promise<VerifiedOp> {
  const op: Op = {
    group: new Uint8Array(0),
    author: peerBytes(peerIdFromPrivateKey(key).toString()),
    lamport: 1n,
    parents: [],
    createdAt: BigInt(now),
    create: { name, members: members.map(peerBytes), nonce }
  }
  return verifyOp(await signOp(key, op))
}

export async function changeOp (key: PrivateKey, group: string, link: { parents: string[], lamport: number }, change: OpChange, now: number): Promise<VerifiedOp> {
  const op: Op = {
    group: fromHex(group),
    author: peerBytes(peerIdFromPrivateKey(key).toString()),
    lamport: BigInt(link.lamport),
    parents: link.parents.map(fromHex),
    createdAt: BigInt(now)
  }
  switch (change.kind) {
    case 'add': op.add = peerBytes(change.target); break
    case 'remove': op.remove = peerBytes(change.target); break
    case 'add-admin': op.addAdmin = peerBytes(change.target); break
    case 'remove-admin': op.removeAdmin = peerBytes(change.target); break
    case 'leave': op.leave = true; break
    case 'rename': op.rename = change.name; break
  }
  return verifyOp(await signOp(key, op))
}
