/**
 * The data behind the /ops page (`GET /api/v2/admin/ops/summary`): the monitor, the rollout status,
 * the backlog over the last hour, conversions and failures over the last hour and the recent job
 * runs — one database snapshot, so every number on the page describes the same instant.
 *
 * The backlog trend is reconstructed, not sampled: at an instant T an appointment was waiting
 * when its time had come (`scheduled_at <= T`, within the auto-start lateness) and it had no
 * session yet — it is still unlinked now, or its session was created after T (its `created`
 * conversion row is newer than T). Both halves read indexes (appointments_due and
 * appointment_conversions_time), so the cost follows the last hour, not the history.
 * Appointments cancelled since T are not counted at T.
 */
import { sql } from 'kysely';
import type { FlagSet } from '../../config/flag-values.js';
import type { Db, Executor } from '../../db/types.js';
import { iso } from '../../lib/schemas.js';
import { inSnapshot, monitorSnapshotIn, type MonitorConfig } from './monitor.js';
import { rolloutStatusIn } from './rollout.js';
import type { OpsSummary } from './schemas.js';

export const TREND_STEP_MINUTES = 5;
export const TREND_POINTS = 13; // now and every 5 minutes back to one hour ago
export const BUCKET_MINUTES = 5;
export const BUCKETS = 12;
export const RECENT_RUNS = 20;

export async function opsSummary(db: Db, flags: FlagSet, config: MonitorConfig): Promise<OpsSummary> {
  return inSnapshot(db, async (trx) => {
    const monitor = await monitorSnapshotIn(trx, flags, config);
    const rollout = await rolloutStatusIn(trx, flags);
    return {
      generated_at: monitor.generated_at,
      monitor,
      rollout,
      backlog_trend: await backlogTrend(trx, config.autoStartMaxLatenessMinutes),
      conversions_last_hour: await conversionsLastHour(trx),
      recent_job_runs: await recentJobRuns(trx),
    };
  });
}

async function backlogTrend(trx: Executor, latenessMinutes: number): Promise<OpsSummary['backlog_trend']> {
  const points = (
    await sql<{ at: Date; due: number }>`
      with pts as (
        select now() - make_interval(mins => ${TREND_STEP_MINUTES} * i) as at
          from generate_series(0, ${TREND_POINTS - 1}) as i
      ),
      waiting as (
        select scheduled_at from appointments
         where status = 'confirmed' and session_id is null and scheduled_at <= now()
      ),
      converted as (
        select min(c.created_at) as created_at, a.scheduled_at
          from appointment_conversions c
          join appointments a on a.id = c.appointment_id
         where c.result = 'created'
           and c.created_at > now() - make_interval(mins => ${TREND_STEP_MINUTES * (TREND_POINTS - 1)})
         group by a.id, a.scheduled_at
      )
      select pts.at,
             ((select count(*) from waiting w
                where w.scheduled_at <= pts.at and w.scheduled_at > pts.at - make_interval(mins => ${latenessMinutes}))
              +
              (select count(*) from converted v
                where v.created_at > pts.at
                  and v.scheduled_at <= pts.at and v.scheduled_at > pts.at - make_interval(mins => ${latenessMinutes}))
             )::int as due
        from pts
       order by pts.at`.execute(trx)
  ).rows;
  const now = points.at(-1)?.due ?? 0;
  // Compare with 15 minutes ago: long enough to ignore one auto-start interval.
  const before = points.at(-4)?.due ?? now;
  return {
    direction: now > before ? 'rising' : now < before ? 'falling' : 'flat',
    step_minutes: TREND_STEP_MINUTES,
    points: points.map((p) => ({ at: iso(p.at)!, due: p.due })),
  };
}

async function conversionsLastHour(trx: Executor): Promise<OpsSummary['conversions_last_hour']> {
  const span = BUCKET_MINUTES * BUCKETS;
  const rows = (
    await sql<{ bucket: number; created: number; failed: number; skipped: number }>`
      select floor(extract(epoch from now() - created_at) / ${BUCKET_MINUTES * 60})::int as bucket,
             count(*) filter (where result = 'created')::int as created,
             count(*) filter (where result = 'failed')::int as failed,
             count(*) filter (where result = 'skipped')::int as skipped
        from appointment_conversions
       where created_at > now() - make_interval(mins => ${span}) and created_at <= now()
       group by 1`.execute(trx)
  ).rows;
  const reasons = (
    await sql<{ reason: string; count: number }>`
      select coalesce(failure_reason, 'unknown_error') as reason, count(*)::int as count
        from appointment_conversions
       where result = 'failed' and created_at > now() - make_interval(mins => ${span}) and created_at <= now()
       group by 1
       order by 2 desc, 1`.execute(trx)
  ).rows;
  const now = (await sql<{ now: Date }>`select now() as now`.execute(trx)).rows[0]!.now.getTime();
  // Oldest bucket first; bucket i ends (BUCKETS - 1 - i) buckets before now.
  const buckets = Array.from({ length: BUCKETS }, (_, i) => {
    const back = BUCKETS - 1 - i;
    const r = rows.find((x) => Math.min(x.bucket, BUCKETS - 1) === back);
    return {
      start: new Date(now - (back + 1) * BUCKET_MINUTES * 60_000).toISOString(),
      created: r?.created ?? 0,
      failed: r?.failed ?? 0,
      skipped: r?.skipped ?? 0,
    };
  });
  const sum = (k: 'created' | 'failed' | 'skipped') => rows.reduce((n, r) => n + r[k], 0);
  return {
    created: sum('created'),
    failed: sum('failed'),
    skipped: sum('skipped'),
    bucket_minutes: BUCKET_MINUTES,
    buckets,
    failures_by_reason: reasons,
  };
}

async function recentJobRuns(trx: Executor): Promise<OpsSummary['recent_job_runs']> {
  const rows = await trx
    .selectFrom('job_runs')
    .select(['run_id', 'job', 'started_at', 'duration_ms', 'status', 'selected', 'created', 'skipped', 'failed'])
    .orderBy('id', 'desc')
    .limit(RECENT_RUNS)
    .execute();
  return rows.map((r) => ({ ...r, run_id: String(r.run_id), started_at: iso(r.started_at)! }));
}
