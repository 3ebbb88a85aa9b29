/**
 * Every value a DHT get brings for a key, not only the one kad-dht returns:
 * kad-dht validates each answer as it comes, but throws after collecting them
 * when a peer refuses its "correction" put, which would lose them all. Signed
 * records (peer records, mailbox records) are read this way, then checked
 * again at the reader's own time.
 */
import type { AbortOptions, ContentRouting, RoutingOptions } from '@libp2p/interface'

export async function dhtValues (contentRouting: Pick<ContentRouting, 'get'>, key: Uint8Array, options: AbortOptions = {}): Promise<{ values: Uint8Array[], error?: Error }> {
  const values: Uint8Array[] = []
  const onProgress = (evt: { type: string, detail?: { value?: unknown } }): void => {
    if (evt.type === 'kad-dht:query:value' && evt.detail?.value instanceof Uint8Array) {
      values.push(evt.detail.value)
    }
  }
  try {
    values.unshift(await contentRouting.get(key, { ...options, onProgress } satisfies RoutingOptions))
    return { values }
  } catch (err: any) {
    options.signal?.throwIfAborted()
    return { values, error: err }
  }
}
