import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { IdentityFileError } from './errors.js'
import { makePrivateDir, makePrivateFiles } from './private-files.js'
import type { PrivateKey } from '@libp2p/interface'

/** Name of the identity key file inside a data dir. */
export const IDENTITY_FILE = 'identity.key'

/**
 * The node's private key: a new Ed25519 key when there is no data dir, else the
 * key stored in `<dataDir>/identity.key` (protobuf-encoded, mode 0600), created
 * on first start. A restart on the same data dir keeps the peer ID. The data
 * dir is made 0700, whatever it was.
 */
export async function loadIdentity (dataDir?: string): Promise<PrivateKey> {
  if (dataDir == null) {
    return generateKeyPair('Ed25519')
  }

  await makePrivateDir(dataDir)
  const file = join(dataDir, IDENTITY_FILE)

  let bytes: Buffer
  try {
    bytes = await readFile(file)
  } catch (err: any) {
    if (err.code !== 'ENOENT') {
      throw new IdentityFileError(`cannot read identity key ${file}: ${err.message}`)
    }
    const key = await generateKeyPair('Ed25519')
    // 'wx' never overwrites a key that another process wrote in the meantime
    await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
    return key
  }

  try {
    const key = privateKeyFromProtobuf(bytes)
    await makePrivateFiles([file])
    return key
  } catch (err: any) {
    throw new IdentityFileError(`identity key ${file} is not a valid private key (${err.message}); restore it from a backup or move it away to create a new identity`)
  }
}
