/**
 * What became of appointments and sessions that nobody finished by hand — the counts the monitor
 * (`appointments:monitor-sessions`, text and `--json`) and the /ops page show, read here only:
 *
 * - deferred: due appointments whose patient is in another live session (`deferred_patient_busy`):
 *   waiting, not failing; they convert on the first auto-start run after that session ends;
 * - stale: confirmed appointments past the auto-start lateness window, not yet `missed` (that
 *   happens after STALE_APPOINTMENT_DAYS); what `appointments:settle` did in the window;
 * - sessions ended in the window, by `end_reason` (`inactive`, `disconnected`, `time_limit`,
 *   `no_show`, `patient_ended`, …).
 *
 * Every query reads a partial or time index (appointments_due, appointment_conversions_time,
 * sessions_ended), so the cost follows the window, not the history.
 */
import { sql } from 'kysely';
import type { Executor } from '../../db/types.js';
import { iso } from '../../lib/schemas.js';
import { DEFERRED_PATIENT_BUSY } from '../sessions/writer.js';
import type { MonitorSnapshot } from './schemas.js';

export interface OutcomeWindows {
  /** AUTO_START_MAX_LATENESS_MINUTES: beyond it an unconverted confirmed appointment is stale. */
  latenessMinutes: number;
  /** STALE_APPOINTMENT_DAYS: a stale appointment becomes `missed` this long after its time. */
  staleDays: number;
  /** The window of the "last N hours" counts. */
  hours: number;
}

export type Outcomes = Pick<MonitorSnapshot, 'deferred' | 'stale' | 'sessions_ended'> & {
  /** Deferred appointments due for at least `sustainMinutes` (waiting, so not a stalled worker). */
  deferredSustained: number;
};

/** Deferred, stale and ended-by-reason counts in the caller's snapshot. */
export async function outcomeCounts(trx: Executor, w: OutcomeWindows & { sustainMinutes: number }): Promise<Outcomes> {
  const live = sql`('waiting_for_doctor', 'active', 'waiting', 'ringing', 'connected')`;
  const waiting = (
    await sql<{ deferred: number; deferred_sustained: number; deferred_oldest: Date | null; stale: number; stale_oldest: Date | null }>`
      select count(*) filter (where deferred)::int as deferred,
             count(*) filter (where deferred and scheduled_at <= now() - make_interval(mins => ${w.sustainMinutes}))::int as deferred_sustained,
             min(scheduled_at) filter (where deferred) as deferred_oldest,
             count(*) filter (where scheduled_at <= now() - make_interval(mins => ${w.latenessMinutes}))::int as stale,
             min(scheduled_at) filter (where scheduled_at <= now() - make_interval(mins => ${w.latenessMinutes})) as stale_oldest
        from (select a.scheduled_at,
                     a.last_conversion_error = ${DEFERRED_PATIENT_BUSY}
                       and exists (select 1 from sessions s where s.patient_id = a.patient_id and s.status in ${live}) as deferred
                from appointments a
               where a.status = 'confirmed' and a.session_id is null and a.scheduled_at <= now()) d`.execute(trx)
  ).rows[0]!;

  const recorded = (
    await sql<{ deferrals: number; deferred_appointments: number; missed: number; expired: number }>`
      select count(*) filter (where result = 'deferred')::int as deferrals,
             count(distinct appointment_id) filter (where result = 'deferred')::int as deferred_appointments,
             count(*) filter (where result = 'missed')::int as missed,
             count(*) filter (where result = 'expired')::int as expired
        from appointment_conversions
       where created_at > now() - make_interval(hours => ${w.hours}) and created_at <= now()
         and result in ('deferred', 'missed', 'expired')`.execute(trx)
  ).rows[0]!;

  const ended = (
    await sql<{ end_reason: string; count: number }>`
      select coalesce(end_reason, 'unknown') as end_reason, count(*)::int as count
        from sessions
       where ended_at > now() - make_interval(hours => ${w.hours}) and ended_at <= now()
       group by 1
       order by 2 desc, 1`.execute(trx)
  ).rows;

  return {
    deferredSustained: waiting.deferred_sustained,
    deferred: {
      reason: DEFERRED_PATIENT_BUSY,
      waiting: waiting.deferred,
      oldest_scheduled_at: iso(waiting.deferred_oldest),
      window_hours: w.hours,
      deferrals: recorded.deferrals,
      appointments: recorded.deferred_appointments,
    },
    stale: {
      count: waiting.stale,
      oldest_scheduled_at: iso(waiting.stale_oldest),
      lateness_minutes: w.latenessMinutes,
      missed_after_days: w.staleDays,
      window_hours: w.hours,
      missed: recorded.missed,
      pending_expired: recorded.expired,
    },
    sessions_ended: {
      window_hours: w.hours,
      total: ended.reduce((n, r) => n + r.count, 0),
      by_reason: ended,
    },
  };
}
