/**
 * The single writer's batch as ONE SQL statement (data-modifying CTEs):
 *
 *   lock the appointment rows (explicit ids: wait for other holders; a claim: FOR UPDATE SKIP
 *   LOCKED) → apply the eligibility rule under the lock (`eligibility.ts`) → insert the sessions
 *   (ON CONFLICT DO NOTHING: one session per appointment and one live session per patient are
 *   unique indexes) → link `appointments.session_id`, status `in_progress` → enqueue the "session
 *   started" notification in the outbox (one row per appointment and session, for the patient
 *   and the doctor) → count failures as attempts with backoff → one conversion row per
 *   appointment → return one outcome per appointment looked at.
 *
 * An eligible appointment whose insert did nothing either already has a session that names it
 * (a link never written: the link is repaired) or its patient holds the one-live-session index —
 * a live session, one committed by another transaction while this statement ran, or the
 * batch's own first session for that patient: it is deferred, without an attempt.
 *
 * Shape: tables are reached by key from a CTE (primary keys, unique indexes), never by joining
 * two CTEs or scanning a table; the planner's row estimates for a claim come from statistics and
 * can be off by orders of magnitude, and with this shape a wrong estimate cannot turn into a
 * quadratic nested loop or a scan of a large table. Nothing travels to the client between steps,
 * so a batch of 2,000 is one round trip.
 */
import { sql, type RawBuilder } from 'kysely';
import type { Modality } from '../../db/types.js';
import {
  appointmentColumns,
  ineligibleReasonSql,
  ineligibleResultSql,
  initialStatusSql,
  kindSql,
  modalitySql,
  type IneligibleReason,
  type SkipReason,
} from './eligibility.js';

export type ConversionSource = 'auto_start' | 'recovery' | 'activate_booked' | 'start_session';

export type FailureReason =
  | 'invalid_appointment_state'
  | 'missing_doctor_or_patient'
  | 'createSession_validation_failed'
  | 'createSession_conflict_existing_session'
  | 'db_update_failed'
  | 'unknown_error';

/**
 * The patient is in another live session (one live session per patient): the appointment waits.
 * Not a failure — no attempt is used, no backoff — and it is not claimed again until the blocking
 * session is over, so it converts within one auto-start interval after that.
 */
export const DEFERRED_PATIENT_BUSY = 'deferred_patient_busy';
export type DeferReason = typeof DEFERRED_PATIENT_BUSY;

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

export interface OutcomeRow {
  aid: number;
  status: string;
  modality: Modality | null;
  result: 'created' | 'skipped' | 'failed' | 'deferred';
  sid: number | null;
  reason: IneligibleReason | SkipReason | DeferReason | null;
}

const COLUMNS = sql`a.id, a.status, a.session_id, a.appointment_type, a.patient_id, a.doctor_id, a.duration_minutes`;

function lockedRows(sel: Selection): RawBuilder<unknown> {
  if ('ids' in sel) {
    return sql`select ${COLUMNS} from appointments a
                where a.id in (select value::bigint from jsonb_array_elements_text(${JSON.stringify(sel.ids)}::jsonb))
                order by a.id
                  for update`;
  }
  return sql`select ${COLUMNS} from appointments a
              where ${sel.claim.where}
              order by a.scheduled_at, a.id
              limit ${sel.claim.limit}
                for update skip locked`;
}

export function batchStatement(sel: Selection, opts: WriterOptions): RawBuilder<OutcomeRow> {
  const reason = sql.ref('c.reason');
  return sql<OutcomeRow>`
    with src as (${lockedRows(sel)}),
    cls as (
      select s.id, s.status, s.session_id, s.patient_id, s.doctor_id, s.duration_minutes,
             ${modalitySql(sql.ref('s.appointment_type'))} as modality,
             ${ineligibleReasonSql(appointmentColumns('s'))} as reason
        from src s),
    elig as (
      select c.id, c.patient_id, c.doctor_id, c.modality, ${kindSql(sql.ref('c.modality'))} as kind, c.duration_minutes
        from cls c
       where c.reason is null),
    ins as (
      insert into sessions (kind, modality, source, appointment_id, patient_id, doctor_id, status, allowed_minutes, credits_at_start)
      select e.kind, e.modality, 'APPOINTMENT', e.id, e.patient_id, e.doctor_id, ${initialStatusSql(sql.ref('e.kind'))},
             -- The booked duration is the time the session may be billed for (billing/pricing.ts cappedUnits).
             e.duration_minutes,
             (select coalesce(sum(case e.modality when 'text' then u.text_remaining
                                                  when 'voice' then u.voice_remaining
                                                  else u.video_remaining end), 0)::int
                from subscriptions u
               where u.patient_id = e.patient_id and u.starts_at <= now() and u.expires_at > now())
        from elig e
       -- Patient order: concurrent batches then wait on each other's one-live-session-per-patient
       -- index entries in the same order, so they can queue but never deadlock.
       order by e.patient_id, e.id
          on conflict do nothing
      returning id, appointment_id, patient_id, doctor_id, modality, kind),
    -- Eligible, but the insert did nothing: a session names the appointment already (then the
    -- link is repaired) or the patient holds the one-live-session index (deferred).
    missed as (
      select m.*, (select o.id from sessions o where o.appointment_id = m.id) as orphan_sid
        from (select id, patient_id, doctor_id, modality, kind from elig
              except all
              select appointment_id, patient_id, doctor_id, modality, kind from ins) m),
    lnk as (
      select i.appointment_id as aid, i.id as sid, i.patient_id, i.doctor_id, i.modality, i.kind from ins i
      union all
      select m.id, m.orphan_sid, m.patient_id, m.doctor_id, m.modality, m.kind from missed m where m.orphan_sid is not null),
    upd as (
      update appointments a
         set session_id = l.sid, status = 'in_progress', last_conversion_error = null, next_conversion_at = null
        from lnk l
       where a.id = l.aid and a.session_id is null
      returning a.id),
    -- One outbox row per appointment and session, for the patient and the doctor (delivered once
    -- per recipient). A repaired link may have been notified before: the key makes it once.
    box as (
      insert into notification_outbox (dedupe_key, recipient_id, also_notify, kind, payload)
      select 'session_started:' || l.aid || ':' || l.sid, l.patient_id, array[l.doctor_id], 'session.started',
             jsonb_build_object('appointment_id', l.aid, 'session_id', l.sid,
                                'session_context', l.kind || '_session:' || l.sid, 'modality', l.modality)
        from lnk l
          on conflict (dedupe_key) do nothing
      returning id),
    outcome as (
      select l.aid, 'confirmed' as status, l.modality, 'created' as result, l.sid, null as reason from lnk l
      union all
      select c.id, c.status, c.modality, ${ineligibleResultSql(reason)}, c.session_id, c.reason
        from cls c where c.reason is not null
      union all
      select m.id, 'confirmed', m.modality, 'deferred', null, ${DEFERRED_PATIENT_BUSY} from missed m where m.orphan_sid is null),
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
