import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_FILE } from '../daemon/api/file.js'
import type { ApiFile } from '../daemon/api/file.js'
import type { BlockedPeer, ContactInfo, MessageRequest } from '../node/types.js'

/** No daemon answers for this data dir. */
export class DaemonNotRunningError extends Error {
  static override name = 'DaemonNotRunningError'
  override name = 'DaemonNotRunningError'
}

/** The daemon answered with an error. */
export class ApiError extends Error {
  static override name = 'ApiError'
  override name = 'ApiError'
  constructor (message: string, readonly status: number, readonly code: string, readonly body: any) {
    super(message)
  }
}

/** The CLI's way to the daemon: the URL and token from `<dataDir>/api.json`. */
export class ApiClient {
  private constructor (readonly url: string, private readonly token: string) {}

  static async forDataDir (dataDir: string): Promise<ApiClient> {
    const file = join(dataDir, API_FILE)
    let api: ApiFile
    try {
      api = JSON.parse(await readFile(file, 'utf8'))
    } catch (err: any) {
      throw new DaemonNotRunningError(`no parley daemon is running for ${dataDir} (${err.code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file}: ${err.message}`}); start one with \`parley node --data-dir ${dataDir}\``)
    }
    return new ApiClient(api.url, api.token)
  }

  private async fetch (path: string, init: RequestInit = {}): Promise<Response> {
    try {
      return await fetch(`${this.url}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${this.token}`, ...(init.body != null ? { 'content-type': 'application/json' } : {}), ...init.headers }
      })
    } catch (err: any) {
      throw new DaemonNotRunningError(`cannot reach the parley daemon at ${this.url} (${err.cause?.code ?? err.message}); is it running? Start it with \`parley node\``)
    }
  }

  async request<T = any> (method: string, path: string, body?: unknown): Promise<{ status: number, body: T }> {
    const response = await this.fetch(path, { method, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await response.text()
    const parsed = text === '' ? undefined : JSON.parse(text)
    if (response.status >= 400 && response.status !== 422) {
      throw new ApiError(parsed?.message ?? `HTTP ${response.status}`, response.status, parsed?.error ?? 'Error', parsed)
    }
    return { status: response.status, body: parsed }
  }

  async get<T = any> (path: string): Promise<T> {
    return (await this.request<T>('GET', path)).body
  }

  /** Adds a contact from a peer ID or invite; `replace` repoints a name that is another peer's (else a 409 ApiError, code ContactExistsError). */
  async addContact (name: string, peer: string, options: { replace?: boolean } = {}): Promise<ContactInfo> {
    return (await this.request<ContactInfo>('POST', '/v1/contacts', { name, peer, ...(options.replace === true ? { replace: true } : {}) })).body
  }

  /** Strangers whose messages wait for a decision. */
  async requests (): Promise<MessageRequest[]> {
    return this.get('/v1/requests')
  }

  /** Accepts a stranger's messages (peer ID or contact name); with `name`, also adds the peer as a contact. */
  async acceptRequest (peer: string, options: { name?: string } = {}): Promise<{ peerId: string, accepted: number, contact?: ContactInfo }> {
    return (await this.request('POST', `/v1/requests/${encodeURIComponent(peer)}/accept`, options.name == null ? {} : { name: options.name })).body
  }

  /** Declines a message request: its messages are deleted. */
  async declineRequest (peer: string): Promise<{ peerId: string, deleted: number }> {
    return (await this.request('DELETE', `/v1/requests/${encodeURIComponent(peer)}`)).body
  }

  async blocked (): Promise<BlockedPeer[]> {
    return this.get('/v1/blocked')
  }

  /** Blocks a peer (peer ID or contact name); its waiting requests are deleted. */
  async block (peer: string): Promise<{ peerId: string, deleted: number }> {
    return (await this.request('POST', '/v1/blocked', { peer })).body
  }

  /** Lifts a block (a 404 ApiError when the peer was not blocked). */
  async unblock (peer: string): Promise<{ unblocked: string }> {
    return (await this.request('DELETE', `/v1/blocked/${encodeURIComponent(peer)}`)).body
  }

  /** Server-Sent Events from /v1/events, as `{ event, data }`, until `signal` aborts. */
  async * events (signal?: AbortSignal): AsyncGenerator<{ event: string, data: any }> {
    const response = await this.fetch('/v1/events', { signal })
    if (response.body == null || response.status !== 200) {
      throw new ApiError(`the event stream answered HTTP ${response.status}`, response.status, 'Error', undefined)
    }
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true })
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let event = 'message'
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data.push(line.slice(6))
          }
          if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) }
        }
      }
    } catch (err: any) {
      if (signal?.aborted === true) return
      throw new DaemonNotRunningError(`the event stream from ${this.url} ended (${err.message}); is the daemon still running?`)
    }
  }
}
