/**
 * Whether a legacy appointment (one without a session) was a consultation: both participants took
 * part — both legacy activity flags set, or a message from each in its chat. Otherwise there was
 * no consultation: it is billed 0 units and ends `missed`.
 *
 * The one definition, written as a SQL predicate over an `appointments` row so every door decides
 * alike and inside its own statement: the legacy billing endpoints (under the appointment's row
 * lock) and `appointments:process-sessions` (in its claiming UPDATE).
 */
import { sql, type RawBuilder } from 'kysely';
import type { Executor } from '../../db/types.js';

/** The predicate over the `appointments` row aliased `alias` in the surrounding statement. */
export function legacyTookPart(alias: string): RawBuilder<boolean> {
  const col = (c: string) => sql.ref(`${alias}.${c}`);
  const wrote = (who: 'patient_id' | 'doctor_id') =>
    sql`exists (select 1 from messages m where m.appointment_id = ${col('id')} and m.sender_id = ${col(who)})`;
  return sql<boolean>`((${col('legacy_patient_active')} and ${col('legacy_doctor_active')})
                       or (${wrote('patient_id')} and ${wrote('doctor_id')}))`;
}

/** {@link legacyTookPart} for one appointment, read in the caller's transaction. */
export async function legacyConsultationHappened(db: Executor, appointmentId: number): Promise<boolean> {
  const r = await sql<{ took_part: boolean }>`
    select ${legacyTookPart('a')} as took_part from appointments a where a.id = ${appointmentId}`.execute(db);
  return r.rows[0]?.took_part === true;
}
