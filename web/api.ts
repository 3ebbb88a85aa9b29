/**
 * The daemon's API as the app calls it: same-origin fetch with the session
 * cookie the login link set (daemon/api/contract.ts is the contract). A 401
 * means the session is gone (the daemon restarted, or the page was opened
 * without the login link): the app then says to run `parley open`.
 */
import { signal } from '@preact/signals'
import type { ApiRoute, ApiRoutes, ErrorBody, RouteBody, RouteParams } from '../daemon/api/contract.js'

/** True once the daemon answered 401: nothing else works until `parley open`. */
export const loggedOut = signal(false)

/** A refusal or failure of the API, with the daemon's own words for it. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  constructor (status: number, body: Partial<ErrorBody>) {
    super(body.message ?? body.error ?? `HTTP ${status}`)
    this.status = status
    this.code = body.error ?? `HTTP ${status}`
  }
}

/** `'GET /v1/history/:peer'` with `{ peer }` → `/v1/history/<peer, percent-encoded>`. */
function pathOf (route: ApiRoute, params: Record<string, string>): { method: string, path: string } {
  const space = route.indexOf(' ')
  const path = route.slice(space + 1).replace(/:([A-Za-z]+)/g, (_, name: string) => encodeURIComponent(params[name]))
  return { method: route.slice(0, space), path }
}

type Answer<R extends ApiRoute> = ApiRoutes[R]['response'] | (ApiRoutes[R] extends { replies: infer M } ? M[keyof M] : never)

/** Calls a route; resolves with the body of any 2xx answer, throws ApiError for the rest. */
export async function call<R extends ApiRoute> (route: R, options: {
  params?: RouteParams<R>
  body?: RouteBody<R>
  query?: Record<string, string | number | undefined>
} = {}): Promise<Answer<R>> {
  const { method, path } = pathOf(route, (options.params ?? {}) as Record<string, string>)
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined) search.set(key, String(value))
  }
  const url = search.size > 0 ? `${path}?${search.toString()}` : path
  const response = await fetch(url, {
    method,
    credentials: 'same-origin',
    headers: options.body === undefined ? {} : { 'content-type': 'application/json' },
    body: options.body === undefined ? undefined : JSON.stringify(options.body)
  })
  if (response.status === 401) loggedOut.value = true
  if (response.status === 204) return null as Answer<R>
  const text = await response.text()
  let body: unknown
  try {
    body = text === '' ? null : JSON.parse(text)
  } catch {
    body = { error: `HTTP ${response.status}`, message: text.slice(0, 200) }
  }
  if (!response.ok) throw new ApiError(response.status, (body ?? {}) as Partial<ErrorBody>)
  return body as Answer<R>
}
