// Resource usage of a process from /proc (Linux): resident memory and CPU time.
import { readFile } from 'node:fs/promises'

/** RSS and peak RSS in MB, and CPU time used so far in seconds (user + system). */
export async function usage (pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const rssKb = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? NaN)
  const peakKb = Number(status.match(/^VmHWM:\s+(\d+) kB/m)?.[1] ?? NaN)
  // the command name may hold spaces: count fields after its closing ')'
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime (fields 14 and 15 of proc(5)) in clock ticks (USER_HZ = 100)
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / 100
  return { rssMb: rssKb / 1024, peakRssMb: peakKb / 1024, cpuSeconds }
}

/** Samples a process's usage every `interval` ms until `stop()`; returns the samples and the CPU share over the span. */
export function sampler (pid, interval = 500) {
  const samples = []
  let timer
  const first = usage(pid).then(u => { samples.push({ t: performance.now(), ...u }) })
  const tick = () => {
    timer = setTimeout(() => {
      usage(pid).then(u => { samples.push({ t: performance.now(), ...u }); tick() }, () => {})
    }, interval)
  }
  tick()
  return {
    async stop () {
      clearTimeout(timer)
      await first
      const last = { t: performance.now(), ...await usage(pid) }
      samples.push(last)
      const a = samples[0]
      const seconds = (last.t - a.t) / 1000
      return {
        seconds,
        cpuPercent: seconds > 0 ? 100 * (last.cpuSeconds - a.cpuSeconds) / seconds : NaN,
        rssMb: last.rssMb,
        maxRssMb: Math.max(...samples.map(s => s.rssMb)),
        peakRssMb: last.peakRssMb
      }
    }
  }
}
