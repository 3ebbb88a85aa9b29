// Baseline for the file benchmark: a raw libp2p stream copying a file's bytes
// from disk to disk, and nothing else (no hashing, no chunk requests, no
// store), with one fsync at the end. The path to read goes first, as one
// length-prefixed frame; then the bytes, unframed, until the stream ends.
import { open } from 'node:fs/promises'
import * as lp from 'it-length-prefixed'

export const BLOB_PROTOCOL = '/parley-bench/blob/1.0.0'
const READ_BYTES = 65_536

export async function handleBlob (libp2p) {
  await libp2p.handle(BLOB_PROTOCOL, async (stream) => {
    try {
      const { value } = await lp.decode(stream)[Symbol.asyncIterator]().next()
      const handle = await open(new TextDecoder().decode(value.subarray()), 'r')
      try {
        for (;;) {
          const buffer = new Uint8Array(READ_BYTES)
          const { bytesRead } = await handle.read(buffer, 0, READ_BYTES, null)
          if (bytesRead === 0) break
          if (!stream.send(buffer.subarray(0, bytesRead))) await stream.onDrain()
        }
      } finally {
        await handle.close()
      }
      await stream.close()
    } catch (err) {
      stream.abort(err)
    }
  }, { runOnLimitedConnection: true, force: true })
}

/** Copies the file at `path` on the other side to `dest` here over `connection`; its bytes. */
export async function fetchBlob (connection, path, dest) {
  const stream = await connection.newStream(BLOB_PROTOCOL)
  stream.send(lp.encode.single(new TextEncoder().encode(path)))
  const handle = await open(dest, 'w')
  let bytes = 0
  try {
    for await (const chunk of stream) {
      const data = chunk.subarray()
      await handle.write(data, 0, data.byteLength, bytes)
      bytes += data.byteLength
    }
    await handle.datasync()
  } finally {
    await handle.close()
  }
  return bytes
}
