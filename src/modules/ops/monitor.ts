/**
 * `appointments:monitor-sessions`: the health of appointment-to-session conversion, read from the
 * database only (appointments, appointment_conversions, guard_event_log, job_runs) so the numbers are
 * the same whichever API, worker or CLI process asks. All queries run in one read-only
 * REPEATABLE READ transaction: one snapshot, and `now()` (the database clock) is the same instant
 * in every window.
 *
 * Levels (the same as the alert rules, ops/prometheus/alerts.yml):
 * - backlog: warning when ≥ 10 appointments have been due continuously for 5 minutes, critical at
 *   ≥ 50. "Continuously for 5 minutes" is judged from the appointments themselves: an appointment
 *   that is due now and whose `scheduled_at` is at least 5 minutes old has been due for the whole
 *   window (a session, once linked, is never unlinked), so their number is a lower bound of the
 *   backlog at every instant of the last 5 minutes — exact when conversion has stopped, the case
 *   the alert exists for. A backlog that churns (new appointments due as fast as old ones convert)
 *   is left to Prometheus' `for: 5m` on `appointments_due_count`.
 * - error rate = failed / (created + failed) conversion attempts (skips are not attempts):
 *   warning above 2 % over 10 minutes, critical above 10 % over 5 minutes. No attempts → 0, ok.
 */
import { sql } from 'kysely';
import type { Config } from '../../config/env.js';
import { PHASE_NAMES, derivePhase, type FlagSet } from '../../config/flag-values.js';
import type { Db, Executor } from '../../db/types.js';
import { iso } from '../../lib/schemas.js';
import { LEGACY_TRIGGER_COMMANDS } from '../jobs/legacy.js';
import { outcomeCounts } from './outcomes.js';
import type { Level, MonitorSnapshot } from './schemas.js';

export const BACKLOG_WARNING = 10;
export const BACKLOG_CRITICAL = 50;
export const BACKLOG_SUSTAIN_MINUTES = 5;
export const ERROR_RATE_WARNING = 0.02;
export const ERROR_RATE_CRITICAL = 0.1;
export const GUARD_WINDOW_HOURS = 24;

export type MonitorConfig = Pick<Config, 'autoStartMaxLatenessMinutes' | 'autoStartMaxAttempts' | 'staleAppointmentDays'>;

const LEVEL_RANK: Record<Level, number> = { ok: 0, warning: 1, critical: 2 };

/** The worse of two levels. */
export const worst = (a: Level, b: Level): Level => (LEVEL_RANK[a] >= LEVEL_RANK[b] ? a : b);

/** `--alert` exit code: 0 ok, 1 warning, 2 critical. */
export const exitCodeFor = (level: Level): number => LEVEL_RANK[level];

/** Backlog level from the number of appointments due for the whole sustain window. */
export function backlogLevel(sustainedCount: number): Level {
  if (sustainedCount >= BACKLOG_CRITICAL) return 'critical';
  if (sustainedCount >= BACKLOG_WARNING) return 'warning';
  return 'ok';
}

/** failed / (created + failed), 0 without attempts. */
export function errorRate(created: number, failed: number): number {
  const attempted = created + failed;
  return attempted === 0 ? 0 : failed / attempted;
}

/** Error-rate level: critical above 10 % over 5 minutes, warning above 2 % over 10 minutes. */
export function errorRateLevel(rate10m: number, rate5m: number): Level {
  if (rate5m > ERROR_RATE_CRITICAL) return 'critical';
  if (rate10m > ERROR_RATE_WARNING) return 'warning';
  return 'ok';
}

/**
 * Runs `fn` in a read-only REPEATABLE READ transaction: every query sees one snapshot and the
 * same `now()`. On PGlite (one connection) callers must use only the handle passed in.
 */
export function inSnapshot<T>(db: Db, fn: (trx: Executor) => Promise<T>): Promise<T> {
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (trx) => {
      await sql`set transaction read only`.execute(trx);
      return fn(trx);
    });
}

/** The conversion monitor, computed from the database. */
export async function monitorSnapshot(db: Db, flags: FlagSet, config: MonitorConfig): Promise<MonitorSnapshot> {
  return inSnapshot(db, (trx) => monitorSnapshotIn(trx, flags, config));
}

/** {@link monitorSnapshot} inside a caller's snapshot transaction (the /ops summary). */
export async function monitorSnapshotIn(trx: Executor, flags: FlagSet, config: MonitorConfig): Promise<MonitorSnapshot> {
  const lateness = config.autoStartMaxLatenessMinutes;
  const maxAttempts = config.autoStartMaxAttempts;

  // Reads only the appointments_due partial index (confirmed, no session): cost follows the
  // backlog, not the history.
  const due = (
    await sql<{
      now: Date;
      due: number;
      given_up: number;
      retrying: number;
      due_for_5m: number;
      oldest: Date | null;
    }>`
      select now() as now,
             count(*) filter (where in_window)::int as due,
             count(*) filter (where in_window and conversion_attempts >= ${maxAttempts})::int as given_up,
             count(*) filter (where in_window and conversion_attempts between 1 and ${maxAttempts - 1})::int as retrying,
             count(*) filter (where in_window
                                and scheduled_at <= now() - make_interval(mins => ${BACKLOG_SUSTAIN_MINUTES}))::int as due_for_5m,
             min(scheduled_at) filter (where in_window) as oldest
        from (select scheduled_at, conversion_attempts,
                     scheduled_at > now() - make_interval(mins => ${lateness}) as in_window
                from appointments
               where status = 'confirmed' and session_id is null and scheduled_at <= now()) d`.execute(trx)
  ).rows[0]!;

  const conv = (
    await sql<{
      c1: number;
      f1: number;
      s1: number;
      c5: number;
      f5: number;
      s5: number;
      c10: number;
      f10: number;
      s10: number;
    }>`
      select count(*) filter (where result = 'created' and created_at > now() - interval '1 minute')::int as c1,
             count(*) filter (where result = 'failed' and created_at > now() - interval '1 minute')::int as f1,
             count(*) filter (where result = 'skipped' and created_at > now() - interval '1 minute')::int as s1,
             count(*) filter (where result = 'created' and created_at > now() - interval '5 minutes')::int as c5,
             count(*) filter (where result = 'failed' and created_at > now() - interval '5 minutes')::int as f5,
             count(*) filter (where result = 'skipped' and created_at > now() - interval '5 minutes')::int as s5,
             count(*) filter (where result = 'created')::int as c10,
             count(*) filter (where result = 'failed')::int as f10,
             count(*) filter (where result = 'skipped')::int as s10
        from appointment_conversions
       where created_at > now() - interval '10 minutes' and created_at <= now()`.execute(trx)
  ).rows[0]!;

  const lastCreated = (
    await sql<{ at: Date | null }>`
      select max(created_at) as at from appointment_conversions where result = 'created'`.execute(trx)
  ).rows[0]!;

  const outcomes = await outcomeCounts(trx, {
    latenessMinutes: lateness,
    staleDays: config.staleAppointmentDays,
    hours: GUARD_WINDOW_HOURS,
    sustainMinutes: BACKLOG_SUSTAIN_MINUTES,
  });
  const guards = await guardCounts(trx, GUARD_WINDOW_HOURS);
  const legacy = await legacyTriggerRuns(trx, GUARD_WINDOW_HOURS);

  const rate10 = errorRate(conv.c10, conv.f10);
  const rate5 = errorRate(conv.c5, conv.f5);
  const backlog = backlogLevel(due.due_for_5m);
  const errLevel = errorRateLevel(rate10, rate5);
  const phase = derivePhase(flags);
  const createdWithin5m = conv.c5 > 0;
  // Appointments waiting for their patient's other session are not a worker that stopped.
  const stuckFor5m = due.due_for_5m - outcomes.deferredSustained;

  return {
    generated_at: iso(due.now)!,
    phase,
    phase_name: PHASE_NAMES[phase],
    flags: { ...flags },
    level: worst(backlog, errLevel),
    due: {
      count: due.due,
      given_up: due.given_up,
      retrying: due.retrying,
      due_for_5m: due.due_for_5m,
      beyond_lateness: outcomes.stale.count,
      oldest_scheduled_at: iso(due.oldest),
      max_lateness_minutes: lateness,
      max_attempts: maxAttempts,
    },
    conversions: {
      last_1m: { created: conv.c1, failed: conv.f1, skipped: conv.s1 },
      last_5m: { created: conv.c5, failed: conv.f5, skipped: conv.s5 },
      last_10m: { created: conv.c10, failed: conv.f10, skipped: conv.s10 },
      last_created_at: iso(lastCreated.at),
    },
    error_rate: { last_5m: rate5, last_10m: rate10 },
    backlog: {
      level: backlog,
      count: due.due,
      sustained_count: due.due_for_5m,
      warning_threshold: BACKLOG_WARNING,
      critical_threshold: BACKLOG_CRITICAL,
      sustain_minutes: BACKLOG_SUSTAIN_MINUTES,
    },
    error_rate_alert: {
      level: errLevel,
      rate_10m: rate10,
      rate_5m: rate5,
      attempted_10m: conv.c10 + conv.f10,
      failed_10m: conv.f10,
      attempted_5m: conv.c5 + conv.f5,
      failed_5m: conv.f5,
      warning_above: ERROR_RATE_WARNING,
      critical_above: ERROR_RATE_CRITICAL,
    },
    stalled: stuckFor5m > 0 && !createdWithin5m,
    guards: { window_hours: GUARD_WINDOW_HOURS, ...guards },
    legacy_triggers: { window_hours: GUARD_WINDOW_HOURS, commands: legacy },
    deferred: outcomes.deferred,
    stale: outcomes.stale,
    sessions_ended: outcomes.sessions_ended,
  };
}

type GuardCounts = MonitorSnapshot['guards']['chat'];

/** Chat and billing guard events of the last `hours`, by outcome and operation. */
export async function guardCounts(trx: Executor, hours: number): Promise<{ chat: GuardCounts; billing: GuardCounts }> {
  const rows = (
    await sql<{ guard: 'chat' | 'billing'; operation: string | null; outcome: string; n: number; appointments: number }>`
      select guard, operation, outcome, count(*)::int as n, count(distinct appointment_id)::int as appointments
        from guard_event_log
       where guard in ('chat', 'billing') and created_at > now() - make_interval(hours => ${hours})
       group by grouping sets ((guard, operation, outcome), (guard))
       order by guard, operation, outcome`.execute(trx)
  ).rows;
  const empty = (): GuardCounts => ({ would_block: 0, blocked: 0, allowed_legacy: 0, not_ready: 0, appointments: 0, by_operation: [] });
  const out = { chat: empty(), billing: empty() };
  for (const r of rows) {
    const g = out[r.guard];
    // The (guard) grouping set: distinct appointments over every operation and outcome.
    if (r.operation === null) {
      g.appointments = r.appointments;
      continue;
    }
    const outcome = r.outcome as 'would_block' | 'blocked' | 'allowed_legacy' | 'not_ready';
    if (!(outcome in g)) continue;
    g[outcome] += r.n;
    let op = g.by_operation.find((o) => o.operation === r.operation);
    if (!op) {
      op = { operation: r.operation, would_block: 0, blocked: 0, allowed_legacy: 0, not_ready: 0 };
      g.by_operation.push(op);
    }
    op[outcome] += r.n;
  }
  return out;
}

/**
 * Runs of the legacy triggers in the last `hours` (job_runs). A run "processed" appointments
 * when it selected or acted on any: `greatest(selected, created + skipped + failed)`.
 */
export async function legacyTriggerRuns(trx: Executor, hours: number): Promise<MonitorSnapshot['legacy_triggers']['commands']> {
  const rows = (
    await sql<{ job: string; runs: number; runs_processing: number; processed: number; failed_runs: number; last_run_at: Date | null }>`
      select job,
             count(*)::int as runs,
             count(*) filter (where processed > 0)::int as runs_processing,
             coalesce(sum(processed), 0)::int as processed,
             count(*) filter (where status = 'failed')::int as failed_runs,
             max(started_at) as last_run_at
        from (select job, status, started_at, greatest(selected, created + skipped + failed) as processed
                from job_runs
               where job in (${sql.join([...LEGACY_TRIGGER_COMMANDS])})
                 and started_at > now() - make_interval(hours => ${hours})) r
       group by job`.execute(trx)
  ).rows;
  return LEGACY_TRIGGER_COMMANDS.map((command_name) => {
    const r = rows.find((x) => x.job === command_name);
    return {
      command_name,
      runs: r?.runs ?? 0,
      runs_processing: r?.runs_processing ?? 0,
      appointments_processed: r?.processed ?? 0,
      failed_runs: r?.failed_runs ?? 0,
      last_run_at: iso(r?.last_run_at ?? null),
    };
  });
}
