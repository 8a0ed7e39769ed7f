/**
 * `appointments:activate-booked` — the legacy ActivateBookedAppointments, kept behind
 * DISABLE_LEGACY_APPOINTMENT_TRIGGERS: starts sessions for confirmed appointments from 5 minutes
 * before their time. Unlike the original (every confirmed appointment loaded each minute, local
 * wall-clock times, no lock, a fresh notification every minute for calls) it claims like
 * auto-start — `session_id is null` in the WHERE, `FOR UPDATE SKIP LOCKED`, the database clock,
 * the same lateness window and attempt limit — and creates the sessions through the single
 * writer (source `activate_booked`), so `session_id` is set and notifications go out once.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import { convertAppointments, type Claim, type ConversionOutcome } from '../sessions/writer.js';
import { countLegacy, legacyTrigger } from './legacy.js';
import type { JobCounts, JobDefinition } from './scheduler.js';

export const ACTIVATE_BOOKED_JOB = 'appointments:activate-booked';
/** The legacy activation buffer: sessions start this many minutes before the booked time. */
export const ACTIVATE_LEAD_MINUTES = 5;

function claimBooked(ctx: AppContext, size: number): Claim {
  return {
    where: sql`a.status = 'confirmed' and a.session_id is null
               and a.scheduled_at <= now() + make_interval(mins => ${ACTIVATE_LEAD_MINUTES})
               and a.scheduled_at > now() - make_interval(mins => ${ctx.config.autoStartMaxLatenessMinutes})
               and (a.next_conversion_at is null or a.next_conversion_at <= now())
               and a.conversion_attempts < ${ctx.config.autoStartMaxAttempts}`,
    limit: size,
  };
}

export async function activateBooked(
  ctx: AppContext,
  opts: { runId: string; signal?: AbortSignal; limit?: number; onBatch?: (o: ConversionOutcome[]) => void },
): Promise<JobCounts> {
  return legacyTrigger(ctx, ACTIVATE_BOOKED_JOB, opts.runId, async () => {
    const counts = { created: 0, skipped: 0, failed: 0, deferred: 0 };
    let attempted = 0;
    let withSession = 0;
    let remaining = opts.limit ?? Number.POSITIVE_INFINITY;
    for (let i = 0; i < 100 && remaining > 0 && !opts.signal?.aborted; i++) {
      const size = Math.min(ctx.config.autoStartBatchSize, remaining);
      const outcomes = await convertAppointments(ctx, [], {
        source: 'activate_booked',
        jobRunId: opts.runId,
        claim: claimBooked(ctx, size),
        deliverNotifications: false,
      });
      for (const o of outcomes) {
        counts[o.result] += 1;
        if (o.reason === 'session_id_already_set') withSession += 1;
      }
      attempted += outcomes.length;
      remaining -= outcomes.length;
      opts.onBatch?.(outcomes);
      if (outcomes.length < size) break;
    }
    countLegacy(ctx, ACTIVATE_BOOKED_JOB, attempted, withSession);
    ctx.log.info(
      { event: 'legacy_trigger_run', command_name: ACTIVATE_BOOKED_JOB, run_id: opts.runId, attempted, ...counts },
      'legacy_trigger_run',
    );
    return { selected: attempted, ...counts, details: { command_name: ACTIVATE_BOOKED_JOB, session_appointments_touched: withSession } };
  });
}

export const activateBookedJob: JobDefinition = {
  name: ACTIVATE_BOOKED_JOB,
  intervalSeconds: () => 60,
  recordIdleRuns: true,
  run: (ctx, { runId, signal }) => activateBooked(ctx, { runId, signal }),
};
