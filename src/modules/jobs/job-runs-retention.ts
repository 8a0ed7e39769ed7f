/**
 * `records:retention`: record tables do not grow without bound. Rows older than
 * RECORD_RETENTION_DAYS (default 30; at least 8, so the 24 h and 7 d windows `rollout:status` and
 * the monitor read stay whole) are deleted from
 *
 *   guard_events, appointment_conversions, notification_outbox (delivered rows only),
 *   idempotency_keys, job_runs (and idle job runs already after 7 days: they carry nothing the
 *   reports read, and auto-start writes 2,880 of them a day per worker).
 *
 * Deletes run in small batches (RETENTION_BATCH rows, each its own short statement on a time
 * index), so no lock is held for long and a large backlog is worked off over several runs.
 * Messages, uploads and the ledger are medical and financial records: never pruned.
 */
import { sql, type RawBuilder } from 'kysely';
import type { AppContext } from '../../context.js';
import type { JobDefinition } from './scheduler.js';

export const JOB_RUNS_RETENTION_JOB = 'records:retention';
export const IDLE_RUN_RETENTION_DAYS = 7;
export const RETENTION_BATCH = 1000;
const MAX_BATCHES_PER_TABLE = 50;

interface Target {
  table: 'guard_events' | 'appointment_conversions' | 'notification_outbox' | 'idempotency_keys' | 'job_runs';
  /** A predicate selecting prunable rows; `days` is the retention. */
  where: (days: number) => RawBuilder<unknown>;
  /** The key to delete by. */
  key: 'id' | 'ctid';
}

const cutoff = (column: string, days: number) => sql`${sql.ref(column)} < now() - make_interval(days => ${days})`;

const TARGETS: Target[] = [
  { table: 'guard_events', key: 'id', where: (d) => cutoff('created_at', d) },
  { table: 'appointment_conversions', key: 'id', where: (d) => cutoff('created_at', d) },
  { table: 'notification_outbox', key: 'id', where: (d) => sql`delivered_at is not null and ${cutoff('delivered_at', d)}` },
  // No id column: deleted by the primary key's tuple.
  { table: 'idempotency_keys', key: 'ctid', where: (d) => cutoff('created_at', d) },
  { table: 'job_runs', key: 'id', where: (d) => cutoff('started_at', d) },
  {
    table: 'job_runs',
    key: 'id',
    where: () =>
      sql`${cutoff('started_at', IDLE_RUN_RETENTION_DAYS)} and status = 'succeeded' and selected = 0 and created = 0 and skipped = 0 and failed = 0`,
  },
];

/** Prunes every record table once (bounded); returns the rows deleted per table. */
export async function pruneRecords(ctx: AppContext, signal?: AbortSignal): Promise<Record<string, number>> {
  const days = ctx.config.recordRetentionDays;
  const deleted: Record<string, number> = {};
  for (const t of TARGETS) {
    for (let i = 0; i < MAX_BATCHES_PER_TABLE && !signal?.aborted; i++) {
      const r = await sql`
        delete from ${sql.table(t.table)}
         where ${sql.ref(t.key)} in (select ${sql.ref(t.key)} from ${sql.table(t.table)} where ${t.where(days)} limit ${RETENTION_BATCH})`.execute(
        ctx.db,
      );
      const n = Number(r.numAffectedRows ?? 0);
      deleted[t.table] = (deleted[t.table] ?? 0) + n;
      if (n > 0) ctx.metrics.retention.pruned.inc({ table: t.table }, n);
      if (n < RETENTION_BATCH) break;
    }
  }
  return deleted;
}

export const jobRunsRetentionJob: JobDefinition = {
  name: JOB_RUNS_RETENTION_JOB,
  intervalSeconds: () => 3600,
  recordIdleRuns: false,
  async run(ctx, { signal }) {
    const deleted = await pruneRecords(ctx, signal);
    const total = Object.values(deleted).reduce((a, b) => a + b, 0);
    return { selected: total, details: { deleted } };
  },
};
