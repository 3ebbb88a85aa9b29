/**
 * Checks, before the node starts, that the TCP ports the user asked it to
 * listen on are free. libp2p is told to tolerate listen failures (a relay
 * that is down at start must not stop the node), so a port in use would
 * otherwise only make the node start without that address, silently.
 */
import { createServer } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'

/** A listen address cannot be bound; the message says what to do. */
export class ListenError extends Error {
  static override name = 'ListenError'
  override name = 'ListenError'
}

/** The host and port of a `/ip4|ip6/<host>/tcp/<port>…` address with a fixed port, else undefined. */
export function fixedTcpPort (address: string): { host: string, port: number } | undefined {
  const [ip, tcp] = multiaddr(address).getComponents()
  if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || tcp?.name !== 'tcp' || ip.value == null) return undefined
  const port = Number(tcp.value)
  return port > 0 ? { host: ip.value, port } : undefined
}

async function tryListen (host: string, port: number): Promise<void> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port, exclusive: true }, resolve)
  })
  await new Promise(resolve => server.close(resolve))
}

/** Throws a ListenError naming the first listen address whose TCP port cannot be had, and what to do about it. */
export async function checkListenPorts (listen: string[]): Promise<void> {
  const tried = new Set<string>()
  for (const address of listen) {
    const fixed = fixedTcpPort(address)
    if (fixed == null) continue
    const key = `${fixed.host}:${fixed.port}`
    // /tcp/4001 and /tcp/4001/ws on one port are libp2p's to share
    if (tried.has(key)) continue
    tried.add(key)
    try {
      await tryListen(fixed.host, fixed.port)
    } catch (err: any) {
      const other = `choose another with --listen /${fixed.host.includes(':') ? 'ip6' : 'ip4'}/${fixed.host}/tcp/<port>`
      switch (err.code) {
        case 'EADDRINUSE':
          throw new ListenError(`port ${fixed.port} is already in use (another parley node?): ${other}, or stop the other one (listen address ${address})`)
        case 'EACCES':
          throw new ListenError(`port ${fixed.port} needs privileges this user does not have: ${other} above 1023 (listen address ${address})`)
        case 'EADDRNOTAVAIL':
          throw new ListenError(`${fixed.host} is not an address of this machine: listen on one of its addresses, or on /ip4/0.0.0.0/tcp/${fixed.port} for all of them (listen address ${address})`)
        default:
          throw new ListenError(`cannot listen on ${address} (${String(err.code ?? err.message)})`)
      }
    }
  }
}
