/**
 * Which appointments may become sessions: the rule, written once in SQL. The single writer
 * applies it to the rows it has locked; recovery's dry run applies the same expression to a
 * plain read to say what an execution would do. Nothing re-states it in TypeScript: callers read
 * the reason the expression produced.
 *
 * An appointment converts when it has no session yet, is `confirmed`, has an appointment type
 * that maps to a modality, and names a patient and a doctor (users with those roles).
 */
import { sql, type RawBuilder } from 'kysely';
import type { Modality } from '../../db/types.js';
import { MODALITY_OF_TYPE } from '../appointments/modality.js';
import { initialStatus, kindOf } from './state.js';

/** Not converted, and not a failure: there is nothing to do (no attempt is counted). */
export type SkipReason = 'session_id_already_set' | 'not_confirmed' | 'not_found';

/** Not converted because the appointment is broken: a failure (an attempt, with backoff). */
export type IneligibleFailure = 'invalid_appointment_state' | 'missing_doctor_or_patient';

/** The reasons the eligibility expression yields, in the order it checks them. */
export type IneligibleReason = Exclude<SkipReason, 'not_found'> | IneligibleFailure;

/** The reasons that make an ineligible appointment a skip rather than a failure. */
export const SKIP_REASONS: readonly IneligibleReason[] = ['session_id_already_set', 'not_confirmed'];

/** The columns of an appointment row the rule reads, as SQL expressions. */
export interface AppointmentColumns {
  status: RawBuilder<unknown>;
  session_id: RawBuilder<unknown>;
  appointment_type: RawBuilder<unknown>;
  patient_id: RawBuilder<unknown>;
  doctor_id: RawBuilder<unknown>;
}

/** The columns of the appointment row aliased `alias` (e.g. `a`). */
export function appointmentColumns(alias: string): AppointmentColumns {
  const col = (name: string) => sql.ref(`${alias}.${name}`) as RawBuilder<unknown>;
  return {
    status: col('status'),
    session_id: col('session_id'),
    appointment_type: col('appointment_type'),
    patient_id: col('patient_id'),
    doctor_id: col('doctor_id'),
  };
}

/** `appointment_type` → modality (null for a type no modality serves), from {@link MODALITY_OF_TYPE}. */
export function modalitySql(appointmentType: RawBuilder<unknown>): RawBuilder<Modality | null> {
  const arms = Object.entries(MODALITY_OF_TYPE).map(([type, modality]) => sql`when ${sql.lit(type)} then ${sql.lit(modality)}`);
  return sql<Modality | null>`(case ${appointmentType} ${sql.join(arms, sql` `)} end)`;
}

/** A modality's session kind (`text` | `call`), from {@link kindOf}. */
export function kindSql(modality: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`(case when ${modality} = 'text' then ${sql.lit(kindOf('text'))} else ${sql.lit(kindOf('voice'))} end)`;
}

/** The status a new session of that kind starts in, from {@link initialStatus}. */
export function initialStatusSql(kind: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`(case when ${kind} = 'text' then ${sql.lit(initialStatus('text'))} else ${sql.lit(initialStatus('call'))} end)`;
}

/**
 * The eligibility rule: null when the appointment may convert, else the first reason it may not.
 * The roles are per-row look-ups by primary key (not a join), so the cost follows the rows the
 * caller selected, never the size of the users table.
 */
export function ineligibleReasonSql(a: AppointmentColumns): RawBuilder<IneligibleReason | null> {
  return sql<IneligibleReason | null>`(case
    when ${a.session_id} is not null then 'session_id_already_set'
    when ${a.status} <> 'confirmed' then 'not_confirmed'
    when ${modalitySql(a.appointment_type)} is null then 'invalid_appointment_state'
    when (select u.role from users u where u.id = ${a.patient_id}) is distinct from 'patient'
      or (select u.role from users u where u.id = ${a.doctor_id}) is distinct from 'doctor'
      then 'missing_doctor_or_patient'
  end)`;
}

/** `skipped` or `failed` for a reason the rule produced (null for none), from {@link SKIP_REASONS}. */
export function ineligibleResultSql(reason: RawBuilder<unknown>): RawBuilder<'skipped' | 'failed' | null> {
  const skips = sql.join(SKIP_REASONS.map((r) => sql.lit(r)));
  return sql<
    'skipped' | 'failed' | null
  >`(case when ${reason} is null then null when ${reason} in (${skips}) then 'skipped' else 'failed' end)`;
}
