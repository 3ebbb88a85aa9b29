import type { DatabaseSync, StatementSync } from 'node:sqlite'

/**
 * SQL statements prepared once per text, for the life of a database
 * connection: preparing costs more than running most of them.
 */
export class PreparedStatements {
  private readonly cache = new Map<string, StatementSync>()

  constructor (private readonly db: DatabaseSync) {}

  /** The statement for `text`, prepared on its first use. */
  get (text: string): StatementSync {
    let statement = this.cache.get(text)
    if (statement == null) {
      statement = this.db.prepare(text)
      this.cache.set(text, statement)
    }
    return statement
  }

  /** Every text prepared so far: what a query-plan test looks at. */
  texts (): string[] {
    return [...this.cache.keys()]
  }

  clear (): void {
    this.cache.clear()
  }
}
