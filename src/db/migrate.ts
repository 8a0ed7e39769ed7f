/**
 * Applies pending migrations in one transaction under an advisory lock, so any number of
 * processes may start at once: the first applies, the others wait and then find nothing to do.
 */
import { sql, type Kysely } from 'kysely';
import { migrations as allMigrations, type Migration } from './migrations/index.js';

// An arbitrary constant that names "sessiongate migrations" among advisory locks.
const MIGRATION_LOCK_KEY = 7_104_202_611;

export async function migrate(db: Kysely<any>, migrations: Migration[] = allMigrations): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`.execute(trx);
    await sql`create table if not exists schema_migrations (
      name text primary key,
      applied_at timestamptz not null default now()
    )`.execute(trx);
    const done = await sql<{ name: string }>`select name from schema_migrations`.execute(trx);
    const applied = new Set(done.rows.map((r) => r.name));
    const ran: string[] = [];
    for (const m of migrations) {
      if (applied.has(m.name)) continue;
      await sql.raw(m.up).execute(trx);
      await sql`insert into schema_migrations (name) values (${m.name})`.execute(trx);
      ran.push(m.name);
    }
    return ran;
  });
}
