/**
 * The single session writer. Every path that turns appointments into sessions — auto-start,
 * recovery, the legacy activate-booked trigger, `start-session` — calls
 * `createSessionsForAppointments`, which works on a set (a set of one for a request):
 *
 *   lock the appointment rows → re-check eligibility under the lock → insert the sessions
 *   (ON CONFLICT DO NOTHING: one session per appointment and one live session per patient are
 *   unique indexes) → link `appointments.session_id`, status `in_progress` → carry pre-session
 *   legacy chat into the session → enqueue "session started" notifications (unique key per
 *   appointment, session and recipient) → record one conversion row per appointment
 *
 * all in the caller's transaction, in a constant number of statements per batch (no per-row
 * round trips), so a batch of 500 costs about as much as a batch of 5.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Modality, Trx } from '../../db/types.js';
import { isCheckViolation, isForeignKeyViolation, isUniqueViolation } from '../../lib/errors.js';
import { formatSessionContext } from './context.js';
import { deliverPendingNotifications } from './notifications.js';
import { modalityForAppointmentType } from './modality.js';
import { initialStatus, kindOf } from './state.js';

export type ConversionSource = 'auto_start' | 'recovery' | 'activate_booked' | 'start_session';

export type FailureReason =
  | 'invalid_appointment_state'
  | 'missing_doctor_or_patient'
  | 'createSession_validation_failed'
  | 'createSession_conflict_existing_session'
  | 'db_update_failed'
  | 'unknown_error';

export type SkipReason = 'session_id_already_set' | 'not_confirmed' | 'not_found';

export interface ConversionOutcome {
  appointmentId: number;
  result: 'created' | 'skipped' | 'failed';
  sessionId: number | null;
  modality: Modality | null;
  reason: FailureReason | SkipReason | null;
  /** Status of the appointment when it was looked at (skips explain themselves with it). */
  appointmentStatus: string | null;
}

export interface WriterOptions {
  source: ConversionSource;
  jobRunId?: string | null;
  /** Count failures as attempts with backoff (auto-start). Default true. */
  recordAttempts?: boolean;
  /** Write a conversion row for skipped appointments too (recovery's audit trail). Default true. */
  recordSkips?: boolean;
}

interface LockedRow {
  id: number;
  status: string;
  session_id: number | null;
  appointment_type: string;
  patient_id: number;
  doctor_id: number;
  patient_role: string | null;
  doctor_role: string | null;
}

/** Backoff before the next automatic attempt: 30 s, 1 min, 2 min … capped at 1 h. */
export const backoffSql = sql`least(interval '30 seconds' * power(2, least(conversion_attempts, 10)), interval '1 hour')`;

const json = (v: unknown) => JSON.stringify(v);

export async function createSessionsForAppointments(trx: Trx, appointmentIds: number[], opts: WriterOptions): Promise<ConversionOutcome[]> {
  const ids = [...new Set(appointmentIds)].filter((n) => Number.isSafeInteger(n) && n > 0);
  if (ids.length === 0) return [];

  const locked = await sql<LockedRow>`
    select a.id, a.status, a.session_id, a.appointment_type, a.patient_id, a.doctor_id,
           p.role as patient_role, d.role as doctor_role
      from appointments a
      left join users p on p.id = a.patient_id
      left join users d on d.id = a.doctor_id
     where a.id in (select value::bigint from jsonb_array_elements_text(${json(ids)}::jsonb))
     order by a.id
       for update of a`.execute(trx);

  const outcomes = new Map<number, ConversionOutcome>();
  const out = (row: Partial<ConversionOutcome> & Pick<ConversionOutcome, 'appointmentId' | 'result'>) =>
    outcomes.set(row.appointmentId, { sessionId: null, modality: null, reason: null, appointmentStatus: null, ...row });

  const candidates: { aid: number; pid: number; did: number; kind: string; modality: Modality; status: string }[] = [];
  for (const a of locked.rows) {
    const modality = modalityForAppointmentType(a.appointment_type);
    const base = { appointmentId: a.id, appointmentStatus: a.status, modality };
    if (a.session_id !== null) out({ ...base, result: 'skipped', reason: 'session_id_already_set', sessionId: a.session_id });
    else if (a.status !== 'confirmed') out({ ...base, result: 'skipped', reason: 'not_confirmed' });
    else if (!modality) out({ ...base, result: 'failed', reason: 'invalid_appointment_state' });
    else if (a.patient_role !== 'patient' || a.doctor_role !== 'doctor') out({ ...base, result: 'failed', reason: 'missing_doctor_or_patient' });
    else {
      const kind = kindOf(modality);
      candidates.push({ aid: a.id, pid: a.patient_id, did: a.doctor_id, kind, modality, status: initialStatus(kind) });
    }
  }
  for (const id of ids) if (!outcomes.has(id) && !candidates.some((c) => c.aid === id)) out({ appointmentId: id, result: 'skipped', reason: 'not_found' });

  if (candidates.length > 0) {
    const inserted = await sql<{ id: number; appointment_id: number }>`
      insert into sessions (kind, modality, source, appointment_id, patient_id, doctor_id, status, credits_at_start)
      select x.kind, x.modality, 'APPOINTMENT', x.aid, x.pid, x.did, x.status,
             (select coalesce(sum(case x.modality when 'text' then s.text_remaining
                                                   when 'voice' then s.voice_remaining
                                                   else s.video_remaining end), 0)::int
                from subscriptions s
               where s.patient_id = x.pid and s.starts_at <= now() and s.expires_at > now())
        from jsonb_to_recordset(${json(candidates)}::jsonb)
             as x(aid bigint, pid bigint, did bigint, kind text, modality text, status text)
       order by x.aid
          on conflict do nothing
      returning id, appointment_id`.execute(trx);
    const created = new Map(inserted.rows.map((r) => [r.appointment_id, r.id]));

    // Not inserted: either a session already names the appointment (a link that was never
    // written — repair it) or the patient already has a live session (unique per patient).
    const missing = candidates.filter((c) => !created.has(c.aid));
    const orphans = new Map<number, number>();
    if (missing.length > 0) {
      const found = await trx
        .selectFrom('sessions')
        .select(['id', 'appointment_id'])
        .where('appointment_id', 'in', missing.map((c) => c.aid))
        .execute();
      for (const f of found) orphans.set(f.appointment_id!, f.id);
    }

    const links = candidates
      .filter((c) => created.has(c.aid) || orphans.has(c.aid))
      .map((c) => ({ ...c, sid: created.get(c.aid) ?? orphans.get(c.aid)!, context: formatSessionContext(c.kind as 'text' | 'call', created.get(c.aid) ?? orphans.get(c.aid)!) }));

    if (links.length > 0) {
      const linkJson = json(links);
      await sql`
        update appointments a
           set session_id = x.sid, status = 'in_progress', last_conversion_error = null, next_conversion_at = null
          from jsonb_to_recordset(${linkJson}::jsonb) as x(aid bigint, sid bigint)
         where a.id = x.aid and a.session_id is null`.execute(trx);
      await sql`
        update messages m
           set session_id = x.sid
          from jsonb_to_recordset(${linkJson}::jsonb) as x(aid bigint, sid bigint)
         where m.appointment_id = x.aid and m.session_id is null`.execute(trx);
      await sql`
        insert into notification_outbox (dedupe_key, recipient_id, kind, payload)
        select 'session_started:' || x.aid || ':' || x.sid || ':' || r.uid, r.uid, 'session.started',
               jsonb_build_object('appointment_id', x.aid, 'session_id', x.sid, 'session_context', x.context,
                                  'modality', x.modality)
          from jsonb_to_recordset(${linkJson}::jsonb)
               as x(aid bigint, sid bigint, pid bigint, did bigint, context text, modality text)
         cross join lateral (values (x.pid), (x.did)) as r(uid)
            on conflict (dedupe_key) do nothing`.execute(trx);
    }
    for (const c of candidates) {
      const sid = created.get(c.aid) ?? orphans.get(c.aid);
      if (sid !== undefined) out({ appointmentId: c.aid, result: 'created', sessionId: sid, modality: c.modality, appointmentStatus: 'confirmed' });
      else out({ appointmentId: c.aid, result: 'failed', reason: 'createSession_conflict_existing_session', modality: c.modality, appointmentStatus: 'confirmed' });
    }
  }

  const all = ids.map((id) => outcomes.get(id)!);
  await recordOutcomes(trx, all, opts);
  return all;
}

/** Conversion rows, and attempts with backoff for failures, in the caller's transaction. */
async function recordOutcomes(trx: Trx, all: ConversionOutcome[], opts: WriterOptions): Promise<void> {
  const failed = all.filter((o) => o.result === 'failed');
  if (failed.length > 0 && opts.recordAttempts !== false) {
    await sql`
      update appointments a
         set conversion_attempts = conversion_attempts + 1,
             last_conversion_error = x.reason,
             next_conversion_at = now() + ${backoffSql}
        from jsonb_to_recordset(${json(failed.map((f) => ({ aid: f.appointmentId, reason: f.reason })))}::jsonb)
             as x(aid bigint, reason text)
       where a.id = x.aid`.execute(trx);
  }
  const rows = all
    .filter((o) => o.reason !== 'not_found' && (o.result !== 'skipped' || opts.recordSkips !== false))
    .map((o) => ({ aid: o.appointmentId, result: o.result, sid: o.sessionId, reason: o.reason }));
  if (rows.length > 0) {
    await sql`
      insert into appointment_conversions (appointment_id, source, result, session_id, failure_reason, job_run_id)
      select x.aid, ${opts.source}, x.result, x.sid, x.reason, ${opts.jobRunId ?? null}::uuid
        from jsonb_to_recordset(${json(rows)}::jsonb) as x(aid bigint, result text, sid bigint, reason text)`.execute(trx);
  }
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
  opts: WriterOptions & { claim?: (trx: Trx) => Promise<number[]> },
): Promise<ConversionOutcome[]> {
  let outcomes: ConversionOutcome[];
  let claimed: number[] = ids;
  try {
    outcomes = await ctx.db.transaction().execute(async (trx) => {
      if (opts.claim) claimed = await opts.claim(trx);
      return createSessionsForAppointments(trx, claimed, opts);
    });
  } catch (batchErr) {
    if (claimed.length <= 1 && !opts.claim) {
      outcomes = [await failOne(ctx, claimed[0]!, batchErr, opts)];
    } else {
      ctx.log.warn({ err: batchErr, count: claimed.length }, 'conversion batch failed; retrying one by one');
      outcomes = [];
      for (const id of claimed) {
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

async function failOne(ctx: AppContext, id: number, err: unknown, opts: WriterOptions): Promise<ConversionOutcome> {
  const reason = classifyConversionError(err);
  ctx.log.error({ err, appointment_id: id }, 'conversion failed');
  const outcome: ConversionOutcome = { appointmentId: id, result: 'failed', sessionId: null, modality: null, reason, appointmentStatus: null };
  try {
    await ctx.db.transaction().execute((trx) => recordOutcomes(trx, [outcome], opts));
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
    ctx.log.info(
      {
        event: 'appointment_session_conversion',
        appointment_id: o.appointmentId,
        result: o.result,
        session_id: o.sessionId,
        failure_reason: o.result === 'failed' ? o.reason : null,
        skip_reason: o.result === 'skipped' ? o.reason : null,
        source: opts.source,
        job_run_id: opts.jobRunId ?? null,
      },
      'appointment_session_conversion',
    );
  }
  if (outcomes.some((o) => o.result === 'created')) {
    for (const o of outcomes) {
      if (o.result === 'created' && o.sessionId !== null) {
        void ctx.bus.publish({ type: 'session.status', sessionId: o.sessionId, payload: { session_id: o.sessionId, status: 'created', appointment_id: o.appointmentId } });
      }
    }
    deliverSoon(ctx);
  }
}

function deliverSoon(ctx: AppContext): void {
  deliverPendingNotifications(ctx).catch((err: unknown) => ctx.log.warn({ err }, 'notification delivery failed; the worker will retry'));
}
