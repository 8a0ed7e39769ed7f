/**
 * `appointments:settle`: nothing stays `pending` or `confirmed` forever.
 *
 * - `pending` whose time has passed (never confirmed) → `expired`;
 * - `confirmed`, never converted, older than STALE_APPOINTMENT_DAYS → `missed`.
 * A confirmed appointment past the auto-start lateness window but younger than that stays
 * `confirmed` — visible in the monitor, /ops and to `appointments:recover-sessions`.
 *
 * Each is a conditional update of a claimed batch (`FOR UPDATE SKIP LOCKED`, re-checked by the
 * UPDATE's own predicate), recorded in `appointment_conversions` (result `expired` / `missed`,
 * source `settle`) like any conversion outcome. "Due" is decided on the database clock.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { JobDefinition } from './scheduler.js';

export const APPOINTMENTS_SETTLE_JOB = 'appointments:settle';
const BATCH = 500;

export async function settleAppointments(ctx: AppContext, runId: string | null = null): Promise<{ expired: number; missed: number }> {
  const staleDays = ctx.config.staleAppointmentDays;
  const one = async (from: 'pending' | 'confirmed', to: 'expired' | 'missed', due: ReturnType<typeof sql>, reason: string) => {
    let total = 0;
    for (let i = 0; i < 100; i++) {
      const r = await sql<{ id: number }>`
        with claimed as (
          select id from appointments a
           where a.status = ${from} and a.session_id is null and ${due}
           order by a.scheduled_at, a.id
           limit ${BATCH}
             for update skip locked),
        upd as (
          update appointments a set status = ${to}
            from claimed c
           where a.id = c.id and a.status = ${from} and a.session_id is null
          returning a.id),
        conv as (
          insert into appointment_conversions (appointment_id, source, result, failure_reason, job_run_id)
          select id, 'settle', ${to}, ${reason}, ${runId}::uuid from upd
          returning id)
        select id from upd`.execute(ctx.db);
      total += r.rows.length;
      if (r.rows.length < BATCH) break;
    }
    if (total > 0) ctx.metrics.conversions.settled.inc({ status: to }, total);
    return total;
  };
  const expired = await one('pending', 'expired', sql`a.scheduled_at <= now()`, 'never_confirmed');
  const missed = await one('confirmed', 'missed', sql`a.scheduled_at <= now() - make_interval(days => ${staleDays})`, 'stale_confirmed');
  return { expired, missed };
}

export const appointmentsSettleJob: JobDefinition = {
  name: APPOINTMENTS_SETTLE_JOB,
  intervalSeconds: () => 60,
  recordIdleRuns: false,
  async run(ctx, { runId }) {
    const r = await settleAppointments(ctx, runId);
    return { selected: r.expired + r.missed, created: r.expired + r.missed, details: r };
  },
};
