/**
 * The single session writer. Every path that turns appointments into sessions — auto-start,
 * recovery, the legacy activate-booked trigger, `start-session` — goes through here, and it
 * works on a set (a set of one for a request): the batch is one statement
 * (`conversion-statement.ts`) in one transaction (`convertAppointments` opens it;
 * `createSessionsForAppointments` runs in the caller's), then, in a second statement of the same
 * transaction, pre-session legacy chat is carried into the new sessions (`carryPreSessionChat`).
 * After commit: metrics, one log line per appointment, notification delivery.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Modality, Trx } from '../../db/types.js';
import { isCheckViolation, isForeignKeyViolation, isUniqueViolation } from '../../lib/errors.js';
import {
  backoffSql,
  batchStatement,
  type Claim,
  type DeferReason,
  type FailureReason,
  type Selection,
  type WriterOptions,
} from './conversion-statement.js';
import type { SkipReason } from './eligibility.js';
import { deliverPendingNotifications } from '../notifications/outbox.js';

export {
  DEFERRED_PATIENT_BUSY,
  type Claim,
  type ConversionSource,
  type DeferReason,
  type FailureReason,
  type WriterOptions,
} from './conversion-statement.js';
export type { SkipReason } from './eligibility.js';

export interface ConversionOutcome {
  appointmentId: number;
  result: 'created' | 'skipped' | 'failed' | 'deferred';
  sessionId: number | null;
  modality: Modality | null;
  reason: FailureReason | SkipReason | DeferReason | null;
  /** Status of the appointment when it was looked at (skips explain themselves with it). */
  appointmentStatus: string | null;
}

/**
 * Converts a set of appointments in the caller's transaction (one statement that never fails on
 * a unique index, so the caller's transaction survives); returns one outcome per requested
 * appointment (`not_found` for ids that do not exist).
 */
export async function createSessionsForAppointments(trx: Trx, appointmentIds: number[], opts: WriterOptions): Promise<ConversionOutcome[]> {
  const ids = cleanIds(appointmentIds);
  if (ids.length === 0) return [];
  return withNotFound(ids, await runBatch(trx, { ids }, opts));
}

const cleanIds = (ids: number[]) => [...new Set(ids)].filter((n) => Number.isSafeInteger(n) && n > 0);

function withNotFound(ids: number[], rows: ConversionOutcome[]): ConversionOutcome[] {
  const byId = new Map(rows.map((o) => [o.appointmentId, o]));
  return ids.map(
    (id) =>
      byId.get(id) ?? {
        appointmentId: id,
        result: 'skipped',
        sessionId: null,
        modality: null,
        reason: 'not_found',
        appointmentStatus: null,
      },
  );
}

async function runBatch(trx: Trx, sel: Selection, opts: WriterOptions): Promise<ConversionOutcome[]> {
  const r = await batchStatement(sel, opts).execute(trx);
  const outcomes: ConversionOutcome[] = r.rows.map((o) => ({
    appointmentId: Number(o.aid),
    result: o.result,
    sessionId: o.sid === null ? null : Number(o.sid),
    modality: o.modality,
    reason: o.reason,
    appointmentStatus: o.status,
  }));
  await carryPreSessionChat(
    trx,
    outcomes.filter((o) => o.result === 'created').map((o) => o.appointmentId),
  );
  return outcomes;
}

/**
 * Pre-session legacy chat (ALLOW_LEGACY_APPOINTMENT_CHAT) joins the new session's history: its
 * messages get the session's id, so session chat reads `session_id = ?` alone, on its keyset
 * index. A statement of its own, after the batch: under READ COMMITTED it sees every message
 * committed up to now — including one whose sender held the appointment's row lock while the
 * batch waited for it, which the batch statement's older snapshot cannot see. No message can
 * come later: a pre-session send locks the appointment row (held by this transaction until it
 * commits) and then finds the session.
 */
async function carryPreSessionChat(trx: Trx, appointmentIds: number[]): Promise<void> {
  if (appointmentIds.length === 0) return;
  // Reached through the appointment ids (an index condition on messages), never by joining the
  // messages table to the batch: the planner may not scan messages, however large it grows.
  await sql`
    update messages m
       set session_id = (select a.session_id from appointments a where a.id = m.appointment_id)
     where m.appointment_id = any(${appointmentIds}::bigint[])
       and m.session_id is null`.execute(trx);
}

/** A failure decided outside the statement (it rolled back): the attempt with backoff and the conversion row. */
async function recordFailure(trx: Trx, id: number, reason: FailureReason, opts: WriterOptions): Promise<void> {
  if (opts.recordAttempts !== false) {
    await sql`
      update appointments
         set conversion_attempts = conversion_attempts + 1, last_conversion_error = ${reason},
             next_conversion_at = now() + ${backoffSql}
       where id = ${id}`.execute(trx);
  }
  await sql`
    insert into appointment_conversions (appointment_id, source, result, session_id, failure_reason, job_run_id)
    values (${id}, ${opts.source}, 'failed', null, ${reason}, ${opts.jobRunId ?? null}::uuid)`.execute(trx);
}

/** Maps an unexpected database error of a one-appointment conversion to a failure reason. */
export function classifyConversionError(err: unknown): FailureReason {
  if (isCheckViolation(err)) return 'createSession_validation_failed';
  if (isUniqueViolation(err)) return 'createSession_conflict_existing_session';
  if (isForeignKeyViolation(err)) return 'missing_doctor_or_patient';
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string' && /^(22|23|40|55)/.test(err.code)) {
    return 'db_update_failed';
  }
  return 'unknown_error';
}

/**
 * Converts appointments with everything around the transaction: the batch in one transaction;
 * if the batch as a whole fails (an unexpected error aborts a transaction), each appointment
 * again in its own, so one bad row never stops the others; after commit, metrics, one log line
 * per appointment, and notification delivery.
 */
export async function convertAppointments(
  ctx: AppContext,
  ids: number[],
  opts: WriterOptions & { claim?: Claim },
): Promise<ConversionOutcome[]> {
  const wanted = cleanIds(ids);
  const sel: Selection = opts.claim ? { claim: opts.claim } : { ids: wanted };
  if (!opts.claim && wanted.length === 0) return [];
  let outcomes: ConversionOutcome[];
  try {
    const rows = await ctx.db.transaction().execute((trx) => runBatch(trx, sel, opts));
    outcomes = opts.claim ? rows : withNotFound(wanted, rows);
  } catch (batchErr) {
    // The batch rolled back as a whole (an unexpected error: a constraint, a lost connection).
    // Redo it one appointment per transaction, so one bad row never stops the others.
    let todo = wanted;
    if (opts.claim) {
      try {
        todo = await claimedIds(ctx, opts.claim);
      } catch (err) {
        ctx.log.error({ err, batch_error: batchErr }, 'conversion batch failed and the due set cannot be read');
        throw batchErr;
      }
    }
    if (todo.length <= 1 && !opts.claim) {
      outcomes = todo.length === 0 ? [] : [await failOne(ctx, todo[0]!, batchErr, opts)];
    } else {
      ctx.log.warn({ err: batchErr, count: todo.length }, 'conversion batch failed; retrying one by one');
      outcomes = [];
      for (const id of todo) {
        try {
          outcomes.push(...(await ctx.db.transaction().execute((trx) => createSessionsForAppointments(trx, [id], opts))));
        } catch (err) {
          outcomes.push(await failOne(ctx, id, err, opts));
        }
      }
    }
  }
  afterConversion(ctx, outcomes, opts);
  return outcomes;
}

/** The appointments a claim would take now (no lock: the one-by-one redo locks each). */
async function claimedIds(ctx: AppContext, claim: Claim): Promise<number[]> {
  const r = await sql<{ id: number }>`
    select a.id from appointments a where ${claim.where} order by a.scheduled_at, a.id limit ${claim.limit}`.execute(ctx.db);
  return r.rows.map((x) => Number(x.id));
}

async function failOne(ctx: AppContext, id: number, err: unknown, opts: WriterOptions): Promise<ConversionOutcome> {
  const reason = classifyConversionError(err);
  ctx.log.error({ err, appointment_id: id }, 'conversion failed');
  const outcome: ConversionOutcome = {
    appointmentId: id,
    result: 'failed',
    sessionId: null,
    modality: null,
    reason,
    appointmentStatus: null,
  };
  try {
    await ctx.db.transaction().execute((trx) => recordFailure(trx, id, reason, opts));
  } catch (recordErr) {
    ctx.log.error({ err: recordErr, appointment_id: id }, 'could not record the failed conversion');
  }
  return outcome;
}

/** Post-commit effects: metrics, the per-appointment log event, notification delivery. */
export function afterConversion(ctx: AppContext, outcomes: ConversionOutcome[], opts: WriterOptions): void {
  for (const o of outcomes) {
    if (o.result === 'created') ctx.metrics.conversions.created.inc({ modality: o.modality ?? 'unknown', source: opts.source });
    if (o.result === 'failed') ctx.metrics.conversions.failed.inc({ reason: o.reason ?? 'unknown_error' });
    if (o.result === 'deferred') ctx.metrics.conversions.deferred.inc();
    ctx.log.info(
      {
        event: 'appointment_session_conversion',
        appointment_id: o.appointmentId,
        result: o.result,
        session_id: o.sessionId,
        failure_reason: o.result === 'failed' ? o.reason : null,
        skip_reason: o.result === 'skipped' ? o.reason : null,
        defer_reason: o.result === 'deferred' ? o.reason : null,
        source: opts.source,
        job_run_id: opts.jobRunId ?? null,
      },
      'appointment_session_conversion',
    );
  }
  // Participants learn about the new session from the "session started" notification (pushed
  // to them on delivery); nobody can be subscribed to a session that did not exist a moment ago.
  if (opts.deliverNotifications !== false && outcomes.some((o) => o.result === 'created')) deliverSoon(ctx);
}

function deliverSoon(ctx: AppContext): void {
  deliverPendingNotifications(ctx).catch((err: unknown) => ctx.log.warn({ err }, 'notification delivery failed; the worker will retry'));
}
