// What a directory takes on disk: the bytes of every file under it (apparent
// sizes, as `du -b` counts them), e.g. a node's data dir with its SQLite WAL.
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'

/** Total size of the files under `dir`, and each file's (relative path → bytes). */
export async function dirBytes (dir) {
  const files = {}
  let total = 0
  const walk = async (sub) => {
    let entries
    try { entries = await readdir(join(dir, sub), { withFileTypes: true }) } catch { return }
    for (const e of entries) {
      const rel = sub === '' ? e.name : join(sub, e.name)
      if (e.isDirectory()) { await walk(rel); continue }
      try {
        const { size } = await stat(join(dir, rel))
        files[rel] = size
        total += size
      } catch {} // gone meanwhile (a SQLite journal)
    }
  }
  await walk('')
  return { total, files }
}

/** Samples `dirBytes(dir).total` every `interval` ms until `stop()`, which returns the largest seen. */
export function peakSampler (dir, interval = 200) {
  let peak = 0
  const state = { stopped: false }
  const loop = (async () => {
    while (!state.stopped) {
      peak = Math.max(peak, (await dirBytes(dir)).total)
      await new Promise(resolve => setTimeout(resolve, interval))
    }
  })()
  return {
    async stop () {
      state.stopped = true
      await loop
      peak = Math.max(peak, (await dirBytes(dir)).total)
      return peak
    }
  }
}
