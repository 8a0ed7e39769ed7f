/**
 * `appointments:process-sessions` — the legacy ProcessAppointmentSessions, kept behind
 * DISABLE_LEGACY_APPOINTMENT_TRIGGERS: closes appointments started under the old flow —
 * `in_progress` with NO session — once `scheduled_at + duration_minutes` has passed:
 * `completed` when both participants took part (the one rule the legacy billing endpoints use:
 * both activity flags, or a message from each — `legacyTookPart`), `missed` (no-show) otherwise.
 *
 * It never touches `confirmed` appointments (they belong to auto-start and recovery) nor any
 * appointment with a session (`session_id is null` is in the WHERE, under the row lock). It does
 * not bill: a legacy appointment is billed through the legacy billing endpoints
 * (`/api/v2/appointments/{id}/end-session`, `process-payment`, `/api/v2/text-appointments/process-deduction`),
 * which charge through the ledger at most once per appointment. The original deducted a session
 * from the patient here with no evidence of a no-show (it read join flags it never selected); this one never does.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import { legacyTookPart } from '../billing/legacy-participation.js';
import { countLegacy, legacyTrigger } from './legacy.js';
import type { JobCounts, JobDefinition } from './scheduler.js';

export const PROCESS_SESSIONS_JOB = 'appointments:process-sessions';
const BATCH = 500;

export interface ClosedAppointment {
  id: number;
  status: 'completed' | 'missed';
  session_id: number | null;
}

export async function processLegacySessions(
  ctx: AppContext,
  opts: { runId: string; signal?: AbortSignal; limit?: number; onClosed?: (rows: ClosedAppointment[]) => void },
): Promise<JobCounts> {
  return legacyTrigger(ctx, PROCESS_SESSIONS_JOB, opts.runId, async () => {
    let completed = 0;
    let missed = 0;
    let withSession = 0;
    let remaining = opts.limit ?? Number.POSITIVE_INFINITY;
    for (let i = 0; i < 100 && remaining > 0 && !opts.signal?.aborted; i++) {
      const size = Math.min(BATCH, remaining);
      // The claim and the update are one statement; the update repeats the conditions so the
      // row is changed only if it still qualifies under the lock. `scheduled_at <= now() - 5 min`
      // (the shortest duration) lets the partial index appointments_legacy_open bound the scan.
      const r = await sql<ClosedAppointment>`
        with claimed as (
          select id
            from appointments
           where status = 'in_progress' and session_id is null
             and scheduled_at <= now() - interval '5 minutes'
             and scheduled_at + make_interval(mins => duration_minutes) <= now()
           order by scheduled_at, id
           limit ${size}
             for update skip locked)
        update appointments a
           set status = case when ${legacyTookPart('a')} then 'completed' else 'missed' end
          from claimed c
         where a.id = c.id and a.status = 'in_progress' and a.session_id is null
        returning a.id, a.status, a.session_id`.execute(ctx.db);
      for (const row of r.rows) {
        if (row.session_id !== null) withSession += 1;
        if (row.status === 'completed') completed += 1;
        else missed += 1;
        ctx.log.info(
          {
            event: 'legacy_appointment_closed',
            appointment_id: row.id,
            status: row.status,
            command_name: PROCESS_SESSIONS_JOB,
            job_run_id: opts.runId,
          },
          'legacy_appointment_closed',
        );
      }
      opts.onClosed?.(r.rows);
      remaining -= r.rows.length;
      if (r.rows.length < size) break;
    }
    const processed = completed + missed;
    countLegacy(ctx, PROCESS_SESSIONS_JOB, processed, withSession);
    ctx.log.info(
      { event: 'legacy_trigger_run', command_name: PROCESS_SESSIONS_JOB, run_id: opts.runId, completed, missed },
      'legacy_trigger_run',
    );
    return {
      selected: processed,
      details: { command_name: PROCESS_SESSIONS_JOB, completed, missed, session_appointments_touched: withSession },
    };
  });
}

export const processSessionsJob: JobDefinition = {
  name: PROCESS_SESSIONS_JOB,
  intervalSeconds: () => 300,
  recordIdleRuns: true,
  run: (ctx, { runId, signal }) => processLegacySessions(ctx, { runId, signal }),
};
