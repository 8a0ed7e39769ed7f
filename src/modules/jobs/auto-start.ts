/**
 * `appointments:auto-start-sessions`: turns due appointments into sessions.
 *
 * Due = `confirmed`, no session, `scheduled_at <= now()` by the database clock, not older than
 * AUTO_START_MAX_LATENESS_MINUTES, its backoff (`next_conversion_at`) reached, fewer than
 * AUTO_START_MAX_ATTEMPTS failed attempts. Each batch claims up to AUTO_START_BATCH_SIZE of them,
 * oldest first, with `FOR UPDATE SKIP LOCKED` inside the single writer's transaction, so any
 * number of workers (and the CLI) run at once without waiting on or double-converting each other.
 * A failure is recorded on the appointment (attempts + backoff) and never stops the batch; after
 * the last attempt the appointment is left for `appointments:recover-sessions` — a failing old
 * appointment drops out of the due set instead of blocking newer ones (the original's LIMIT 50
 * head-of-line blocking).
 *
 * A run loops over batches until the due set is drained, the run's `limit` is reached, the run
 * budget (RUN_BUDGET_MS) is spent or the worker stops, and logs one `appointment_auto_start_run`
 * event. Per-appointment log events and metrics come from the writer (`afterConversion`).
 *
 * Notifications: each batch enqueues its "session started" rows in the outbox inside its
 * transaction; the run then starts delivering them in the background (once per run, not per
 * batch) and the notification-delivery job retries whatever is left. The CLI waits for the
 * delivery before it exits.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Executor } from '../../db/types.js';
import { deliverPendingNotifications } from '../notifications/outbox.js';
import { DEFERRED_PATIENT_BUSY, convertAppointments, type Claim, type ConversionOutcome } from '../sessions/writer.js';
import type { JobCounts, JobDefinition } from './scheduler.js';

export const AUTO_START_JOB = 'appointments:auto-start-sessions';

/**
 * A run stops starting new batches after this long, so a huge backlog is worked off in runs
 * of bounded length (a stopping worker never waits long; job_runs rows stay meaningful).
 */
export const RUN_BUDGET_MS = 25_000;

export interface AutoStartOptions {
  runId: string;
  signal?: AbortSignal;
  /** At most this many appointments in this run (the CLI's --limit); default: drain. */
  limit?: number;
  trigger: 'worker' | 'cli';
  /** Called after each committed batch (the CLI prints --verbose lines as it goes). */
  onBatch?: (outcomes: ConversionOutcome[]) => void;
}

export interface AutoStartSummary {
  run_id: string;
  due_count: number;
  attempted_count: number;
  created_count: number;
  skipped_count: number;
  failed_count: number;
  /** Waiting for their patient's other live session to end (not failures). */
  deferred_count: number;
  batches: number;
  runtime_ms: number;
  stopped_by: 'drained' | 'limit' | 'budget' | 'signal';
  trigger: 'worker' | 'cli';
}

type Window = { lateness: number; maxAttempts: number };
const windowOf = (ctx: AppContext): Window => ({
  lateness: ctx.config.autoStartMaxLatenessMinutes,
  maxAttempts: ctx.config.autoStartMaxAttempts,
});

/**
 * Appointments due now, the `appointments_due_count` definition: confirmed, unlinked, time come,
 * within the lateness window (those auto-start gave up on included — they are still due, and
 * recovery is how they get converted). Reads only the `appointments_due` partial index.
 */
export async function countDue(db: Executor, w: Window): Promise<number> {
  const r = await sql<{ n: number }>`
    select count(*)::int as n
      from appointments
     where status = 'confirmed' and session_id is null
       and scheduled_at <= now()
       and scheduled_at > now() - make_interval(mins => ${w.lateness})`.execute(db);
  return r.rows[0]?.n ?? 0;
}

/**
 * The claim: up to `size` due appointments, oldest first; the writer takes them with FOR UPDATE
 * SKIP LOCKED in its batch statement, so concurrent runs split the due set between them.
 */
export function claimDue(w: Window, size: number): Claim {
  return {
    where: sql`a.status = 'confirmed' and a.session_id is null
               and a.scheduled_at <= now()
               and a.scheduled_at > now() - make_interval(mins => ${w.lateness})
               and (a.next_conversion_at is null or a.next_conversion_at <= now())
               and a.conversion_attempts < ${w.maxAttempts}
               -- Deferred because the patient was busy: claimed again once that session is over.
               and (a.last_conversion_error is distinct from ${DEFERRED_PATIENT_BUSY}
                    or not exists (select 1 from sessions s
                                    where s.patient_id = a.patient_id
                                      and s.status in ('waiting_for_doctor', 'active', 'waiting', 'ringing', 'connected')))`,
    limit: size,
  };
}

export async function runAutoStart(ctx: AppContext, opts: AutoStartOptions): Promise<AutoStartSummary> {
  const started = performance.now();
  const w = windowOf(ctx);
  const batchSize = ctx.config.autoStartBatchSize;
  const due = await countDue(ctx.db, w);
  const counts = { attempted: 0, created: 0, skipped: 0, failed: 0, deferred: 0, batches: 0 };
  let remaining = opts.limit ?? Number.POSITIVE_INFINITY;
  let stoppedBy: AutoStartSummary['stopped_by'] = 'drained';
  for (;;) {
    if (opts.signal?.aborted) {
      stoppedBy = 'signal';
      break;
    }
    if (remaining <= 0) {
      stoppedBy = 'limit';
      break;
    }
    if (performance.now() - started > RUN_BUDGET_MS) {
      stoppedBy = 'budget';
      break;
    }
    const size = Math.min(batchSize, remaining);
    const outcomes = await convertAppointments(ctx, [], {
      source: 'auto_start',
      jobRunId: opts.runId,
      claim: claimDue(w, size),
      deliverNotifications: false,
    });
    if (outcomes.length > 0) counts.batches += 1;
    for (const o of outcomes) counts[o.result] += 1;
    counts.attempted += outcomes.length;
    remaining -= outcomes.length;
    opts.onBatch?.(outcomes);
    if (outcomes.length < size) break; // the due set is drained (for this run's view of it)
  }
  const summary: AutoStartSummary = {
    run_id: opts.runId,
    due_count: due,
    attempted_count: counts.attempted,
    created_count: counts.created,
    skipped_count: counts.skipped,
    failed_count: counts.failed,
    deferred_count: counts.deferred,
    batches: counts.batches,
    runtime_ms: Math.round((performance.now() - started) * 100) / 100,
    stopped_by: stoppedBy,
    trigger: opts.trigger,
  };
  ctx.log.info({ event: 'appointment_auto_start_run', ...summary, source: 'APPOINTMENT' }, 'appointment_auto_start_run');
  if (counts.created > 0 && opts.trigger === 'worker') {
    deliverOutbox(ctx).catch((err: unknown) => ctx.log.warn({ err }, 'notification delivery failed; the worker will retry'));
  }
  return summary;
}

/** Delivers the outbox until it is empty (bounded); returns how many were delivered. */
export async function deliverOutbox(ctx: AppContext): Promise<number> {
  let total = 0;
  for (let i = 0; i < 100; i++) {
    const n = await deliverPendingNotifications(ctx, 2000);
    total += n;
    if (n < 2000) break;
  }
  return total;
}

export function autoStartCounts(s: AutoStartSummary): JobCounts {
  return {
    selected: s.attempted_count,
    created: s.created_count,
    skipped: s.skipped_count,
    failed: s.failed_count,
    details: {
      due_count: s.due_count,
      deferred: s.deferred_count,
      batches: s.batches,
      stopped_by: s.stopped_by,
      trigger: s.trigger,
    },
    more: s.stopped_by === 'budget',
  };
}

export const autoStartJob: JobDefinition = {
  name: AUTO_START_JOB,
  intervalSeconds: (ctx) => ctx.config.autoStartIntervalSeconds,
  // Every run is recorded, idle ones too: "auto-start ran at 12:00:30 and found nothing due" is
  // the evidence an operator needs when a backlog alert fires.
  recordIdleRuns: true,
  async run(ctx, { runId, signal }) {
    return autoStartCounts(await runAutoStart(ctx, { runId, signal, trigger: 'worker' }));
  },
};
