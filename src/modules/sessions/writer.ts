/**
 * The single session writer. Every path that turns appointments into sessions — auto-start,
 * recovery, the legacy activate-booked trigger, `start-session` — goes through here, and it
 * works on a set (a set of one for a request). One batch is ONE SQL statement (data-modifying
 * CTEs) in one transaction (`convertAppointments` opens it; `createSessionsForAppointments` runs
 * in the caller's):
 *
 *   lock the appointment rows (auto-start: claim them with FOR UPDATE SKIP LOCKED)
 *   → re-check eligibility under the lock (confirmed, no session, a known type, a patient and a
 *     doctor) → insert the sessions (one session per appointment and one live session per
 *     patient are unique indexes — see BatchMode for how conflicts are handled; rows go in
 *     patient order so concurrent batches never deadlock on the per-patient index) → link
 *     `appointments.session_id`, status `in_progress` → enqueue the "session started" notification in the outbox (one row per appointment and session, unique key,
 *     delivered to the patient and the doctor)
 *   → count failures as attempts with backoff → one conversion row per appointment
 *
 * and then, in a second statement of the same transaction, carry pre-session legacy chat into
 * the new sessions (`carryPreSessionChat`).
 *
 * The statement's cost is per row, not per round trip: no batch data travels to the client and
 * back between steps, so a batch of 2,000 is one round trip (see docs/benchmarks.md).
 */
import { sql, type RawBuilder } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Modality, Trx } from '../../db/types.js';
import { isCheckViolation, isForeignKeyViolation, isUniqueViolation } from '../../lib/errors.js';
import { deliverPendingNotifications } from '../notifications/outbox.js';
import { modalityForAppointmentType } from '../appointments/modality.js';

export type ConversionSource = 'auto_start' | 'recovery' | 'activate_booked' | 'start_session';

export type FailureReason =
  | 'invalid_appointment_state'
  | 'missing_doctor_or_patient'
  | 'createSession_validation_failed'
  | 'createSession_conflict_existing_session'
  | 'db_update_failed'
  | 'unknown_error';

export type SkipReason = 'session_id_already_set' | 'not_confirmed' | 'not_found';

/**
 * The patient is in another live session (one live session per patient): the appointment waits.
 * Not a failure — no attempt is used, no backoff — and it is not claimed again until the blocking
 * session is over, so it converts within one auto-start interval after that.
 */
export const DEFERRED_PATIENT_BUSY = 'deferred_patient_busy';
export type DeferReason = typeof DEFERRED_PATIENT_BUSY;

export interface ConversionOutcome {
  appointmentId: number;
  result: 'created' | 'skipped' | 'failed' | 'deferred';
  sessionId: number | null;
  modality: Modality | null;
  reason: FailureReason | SkipReason | DeferReason | null;
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
  /**
   * Deliver the enqueued notifications right after commit (default true). Batch callers pass
   * false and deliver once per run instead of once per batch.
   */
  deliverNotifications?: boolean;
}

/** What the writer needs to know about an appointment to decide whether it may convert it. */
export interface EligibilityInput {
  status: string;
  session_id: number | null;
  appointment_type: string;
  patient_role: string | null;
  doctor_role: string | null;
}

export type Eligibility =
  | { ok: true; modality: Modality }
  | { ok: false; result: 'skipped'; reason: 'session_id_already_set' | 'not_confirmed'; modality: Modality | null }
  | { ok: false; result: 'failed'; reason: 'invalid_appointment_state' | 'missing_doctor_or_patient'; modality: Modality | null };

/**
 * The eligibility rule, pure: the writer applies it under the row lock; recovery's dry run
 * applies it to a plain read to say what an execution would do.
 */
export function eligibility(a: EligibilityInput): Eligibility {
  const modality = modalityForAppointmentType(a.appointment_type);
  if (a.session_id !== null) return { ok: false, result: 'skipped', reason: 'session_id_already_set', modality };
  if (a.status !== 'confirmed') return { ok: false, result: 'skipped', reason: 'not_confirmed', modality };
  if (!modality) return { ok: false, result: 'failed', reason: 'invalid_appointment_state', modality };
  if (a.patient_role !== 'patient' || a.doctor_role !== 'doctor')
    return { ok: false, result: 'failed', reason: 'missing_doctor_or_patient', modality };
  return { ok: true, modality };
}

/** Backoff before the next automatic attempt: 30 s, 1 min, 2 min … capped at 1 h. */
export const backoffSql = sql`least(interval '30 seconds' * power(2, least(conversion_attempts, 10)), interval '1 hour')`;

/**
 * Which appointments a batch works on: explicit ids (locked, waiting for other holders), or a
 * claim — a due-set predicate on `appointments a`, taken oldest first, `limit` rows, skipping
 * rows another transaction holds (FOR UPDATE SKIP LOCKED).
 */
export type Selection = { ids: number[] } | { claim: Claim };
export interface Claim {
  /** A predicate over `appointments a` (the database clock: use now()). */
  where: RawBuilder<unknown>;
  limit: number;
}

interface OutcomeRow {
  aid: number;
  status: string;
  modality: Modality | null;
  result: ConversionOutcome['result'];
  sid: number | null;
  reason: FailureReason | SkipReason | DeferReason | null;
}

const json = (v: unknown) => JSON.stringify(v);

/**
 * How the batch statement treats the unique indexes it may hit:
 * - `fast`: plain INSERTs (ON CONFLICT's speculative insertion is a measurable share of a
 *   batch). A patient's second appointment in the same batch is set aside before the insert
 *   (it fails with `createSession_conflict_existing_session` and is retried later). Any other
 *   conflict — the patient already has a live session, or one was committed a moment ago —
 *   makes the statement fail with a unique violation, and the caller runs the batch again in
 *   `safe` mode: a batch that contains such an appointment costs twice, the others nothing.
 * - `safe`: ON CONFLICT DO NOTHING everywhere, and broken links repaired; never fails on those
 *   indexes. Used for requests (a set of one) and in the caller's own transactions.
 */
export type BatchMode = 'fast' | 'safe';

/**
 * The whole batch as one statement. Eligibility here must agree with {@link eligibility}.
 *
 * Shape: no step joins two CTEs on the fast path (each is fed by the previous one's RETURNING
 * or filtered from one CTE), and tables are only reached by key from a CTE (primary keys,
 * `= any(array(...))`). The planner's row estimates for a claim come from statistics and can be
 * off by three orders of magnitude; with this shape a wrong estimate cannot turn into a
 * quadratic CTE-to-CTE nested loop or a scan of a large table.
 */
export function batchStatement(sel: Selection, opts: WriterOptions, mode: BatchMode = 'safe') {
  const fast = mode === 'fast';
  const source =
    'ids' in sel
      ? sql`select a.id, a.status, a.session_id, a.appointment_type, a.patient_id, a.doctor_id, a.duration_minutes
              from appointments a
             where a.id in (select value::bigint from jsonb_array_elements_text(${json(sel.ids)}::jsonb))
             order by a.id
               for update`
      : sql`select a.id, a.status, a.session_id, a.appointment_type, a.patient_id, a.doctor_id, a.duration_minutes
              from appointments a
             where ${sel.claim.where}
             order by a.scheduled_at, a.id
             limit ${sel.claim.limit}
               for update skip locked`;
  return sql<OutcomeRow>`
    with src as (${source}),
    cls as (
      select s.id, s.status, s.session_id, s.patient_id, s.doctor_id, s.duration_minutes,
             case s.appointment_type when 'text' then 'text' when 'audio' then 'voice'
                                     when 'voice' then 'voice' when 'video' then 'video' end as modality,
             case when s.session_id is not null then 'session_id_already_set'
                  when s.status <> 'confirmed' then 'not_confirmed'
                  when s.appointment_type not in ('text', 'audio', 'voice', 'video') then 'invalid_appointment_state'
                  -- Per-row look-ups (not a join): the cost follows the batch, not the users table.
                  when (select u.role from users u where u.id = s.patient_id) is distinct from 'patient'
                    or (select u.role from users u where u.id = s.doctor_id) is distinct from 'doctor'
                    then 'missing_doctor_or_patient'
             end as reason,
             -- A session already names the appointment but the link was never written: repair
             -- the link. Impossible by construction (both are written in one transaction), so the
             -- fast mode does not look: its plain insert would fail on the appointment_id index
             -- and the safe mode repairs.
             ${fast ? sql`null::bigint` : sql`(select o.id from sessions o where o.appointment_id = s.id)`} as orphan_sid
        from src s),
    -- Eligible rows; a patient's second appointment in the batch waits for a later batch (one
    -- live session per patient), numbered here so the fast mode needs no ON CONFLICT.
    elig as (
      select c.id, c.patient_id, c.doctor_id, c.modality, c.orphan_sid, c.duration_minutes,
             row_number() over (partition by c.patient_id order by c.id) as nth
        from cls c
       where c.reason is null),
    ins as (
      insert into sessions (kind, modality, source, appointment_id, patient_id, doctor_id, status, allowed_minutes, credits_at_start)
      select case when e.modality = 'text' then 'text' else 'call' end, e.modality, 'APPOINTMENT', e.id,
             e.patient_id, e.doctor_id, case when e.modality = 'text' then 'waiting_for_doctor' else 'waiting' end,
             -- The booked duration is the time the session may be billed for (billing/pricing.ts cappedUnits).
             e.duration_minutes,
             (select coalesce(sum(case e.modality when 'text' then u.text_remaining
                                                  when 'voice' then u.voice_remaining
                                                  else u.video_remaining end), 0)::int
                from subscriptions u
               where u.patient_id = e.patient_id and u.starts_at <= now() and u.expires_at > now())
        from elig e
       where e.orphan_sid is null ${fast ? sql`and e.nth = 1` : sql``}
       -- Patient order: concurrent batches then wait on each other's one-live-session-per-patient
       -- index entries in the same order, so they can queue but never deadlock.
       order by e.patient_id, e.id
       ${fast ? sql`` : sql`on conflict do nothing`}
      returning id, appointment_id, patient_id, doctor_id, modality, true as fresh),
    lnk as (
      select i.appointment_id as aid, i.id as sid, i.patient_id, i.doctor_id, i.modality, i.fresh from ins i
      ${
        fast
          ? sql``
          : sql`union all
                select e.id, e.orphan_sid, e.patient_id, e.doctor_id, e.modality, false from elig e where e.orphan_sid is not null`
      }),
    upd as (
      update appointments a
         set session_id = l.sid, status = 'in_progress', last_conversion_error = null, next_conversion_at = null
        from lnk l
       where a.id = l.aid and a.session_id is null
      returning a.id),
    -- One outbox row per appointment and session, for the patient and the doctor (delivered
    -- once per recipient). The key names the new session, so for a session created by this
    -- statement it cannot exist yet (a plain insert); a repaired link may have been notified
    -- before (on conflict).
    box as (
      insert into notification_outbox (dedupe_key, recipient_id, also_notify, kind, payload)
      select 'session_started:' || l.aid || ':' || l.sid, l.patient_id, array[l.doctor_id], 'session.started',
             jsonb_build_object('appointment_id', l.aid, 'session_id', l.sid,
                                'session_context', case when l.modality = 'text' then 'text' else 'call' end || '_session:' || l.sid,
                                'modality', l.modality)
        from lnk l
       where l.fresh
      returning id),
    ${
      fast
        ? sql``
        : sql`box_repaired as (
                insert into notification_outbox (dedupe_key, recipient_id, also_notify, kind, payload)
                select 'session_started:' || l.aid || ':' || l.sid, l.patient_id, array[l.doctor_id], 'session.started',
                       jsonb_build_object('appointment_id', l.aid, 'session_id', l.sid,
                                          'session_context', case when l.modality = 'text' then 'text' else 'call' end || '_session:' || l.sid,
                                          'modality', l.modality)
                  from lnk l
                 where not l.fresh
                    on conflict (dedupe_key) do nothing
                returning id),`
    }
    -- Eligible but not inserted: the patient's live session (or the batch's own first session
    -- for that patient) holds the one-live-session index.
    conflicted as (
      ${
        fast
          ? sql`select e.id, e.modality from elig e where e.nth > 1`
          : sql`select e.id, e.modality from elig e where e.orphan_sid is null
                except
                select i.appointment_id, i.modality from ins i`
      }),
    outcome as (
      select l.aid, 'confirmed' as status, l.modality, 'created' as result, l.sid, null as reason from lnk l
      union all
      select c.id, c.status, c.modality,
             case when c.reason in ('session_id_already_set', 'not_confirmed') then 'skipped' else 'failed' end,
             c.session_id, c.reason
        from cls c where c.reason is not null
      union all
      select k.id, 'confirmed', k.modality, 'deferred', null, ${DEFERRED_PATIENT_BUSY} from conflicted k),
    att as (
      update appointments a
         set conversion_attempts = conversion_attempts + 1, last_conversion_error = o.reason,
             next_conversion_at = now() + ${backoffSql}
        from outcome o
       where a.id = o.aid and o.result = 'failed' and ${opts.recordAttempts !== false}
      returning a.id),
    -- Deferred: no attempt, no backoff; the mark keeps it out of the claim while the patient is busy.
    dfr as (
      update appointments a
         set last_conversion_error = o.reason, next_conversion_at = null
        from outcome o
       where a.id = o.aid and o.result = 'deferred'
      returning a.id),
    conv as (
      insert into appointment_conversions (appointment_id, source, result, session_id, failure_reason, job_run_id)
      select o.aid, ${opts.source}, o.result, o.sid, o.reason, ${opts.jobRunId ?? null}::uuid
        from outcome o
       where o.result <> 'skipped' or ${opts.recordSkips !== false}
      returning id)
    select aid, status, modality, result, sid, reason from outcome order by aid`;
}

/**
 * Converts a set of appointments in the caller's transaction (one statement, `safe` mode: it
 * never fails on a unique index, so the caller's transaction survives); returns one outcome per
 * requested appointment (`not_found` for ids that do not exist).
 */
export async function createSessionsForAppointments(trx: Trx, appointmentIds: number[], opts: WriterOptions): Promise<ConversionOutcome[]> {
  const ids = cleanIds(appointmentIds);
  if (ids.length === 0) return [];
  return withNotFound(ids, await runBatch(trx, { ids }, opts, 'safe'));
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

async function runBatch(trx: Trx, sel: Selection, opts: WriterOptions, mode: BatchMode): Promise<ConversionOutcome[]> {
  const r = await batchStatement(sel, opts, mode).execute(trx);
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

/** Conversion rows (and attempts with backoff) for outcomes decided outside the statement. */
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
  opts: WriterOptions & { claim?: Claim },
): Promise<ConversionOutcome[]> {
  const wanted = cleanIds(ids);
  const sel: Selection = opts.claim ? { claim: opts.claim } : { ids: wanted };
  if (!opts.claim && wanted.length === 0) return [];
  const attempt = async (mode: BatchMode) => {
    const rows = await ctx.db.transaction().execute((trx) => runBatch(trx, sel, opts, mode));
    return opts.claim ? rows : withNotFound(wanted, rows);
  };
  let outcomes: ConversionOutcome[];
  try {
    try {
      outcomes = await attempt('fast');
    } catch (err) {
      // A patient already had a live session (or one was committed after the statement's
      // snapshot), or a broken link: run the batch again tolerating the conflict (that
      // appointment fails and is retried later; a broken link is repaired).
      if (!isUniqueViolation(err)) throw err;
      outcomes = await attempt('safe');
    }
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
