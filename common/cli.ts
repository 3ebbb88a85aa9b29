/** What the node and relay commands share: repeatable options and clean shutdown. */

/** Commander collector for repeatable options (`--listen a --listen b`). */
export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

/** Stops `service` on the first SIGINT/SIGTERM; a second signal exits at once. */
export function stopOnSignals (name: string, service: { stop(): Promise<void> }): void {
  let stopping = false
  const onSignal = (signal: string): void => {
    if (stopping) {
      process.exit(130)
    }
    stopping = true
    console.error(`${name}: ${signal} received, stopping`)
    service.stop().then(() => { process.exit(0) }, (err: Error) => {
      console.error(`${name}: error while stopping: ${err.message}`)
      process.exit(1)
    })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}
