/** The file where a running daemon leaves its API address and token (like bitcoind's cookie). */
export const API_FILE = 'api.json'

/** What the daemon writes to `<data dir>/api.json` and the CLI reads. */
export interface ApiFile {
  url: string
  token: string
  pid: number
}
