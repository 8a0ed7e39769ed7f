/**
 * "Your session ended: no credit left" — enqueued in the transaction that ended the session, one
 * outbox row per participant with a unique key (a retried or concurrent end enqueues nothing
 * more), delivered after commit by the notification outbox.
 */
import { sql } from 'kysely';
import type { Session, Trx } from '../../db/types.js';
import { formatSessionContext } from '../session-context.js';

export const NO_CREDIT_NOTICE_KIND = 'session.ended_no_credit';

export async function enqueueNoCreditNotice(trx: Trx, s: Session): Promise<void> {
  const payload = JSON.stringify({
    session_id: s.id,
    session_context: formatSessionContext(s.kind, s.id),
    appointment_id: s.appointment_id,
    modality: s.modality,
    units_billed: s.units_billed,
    ended_at: s.ended_at ? s.ended_at.toISOString() : null,
  });
  await sql`
    insert into notification_outbox (dedupe_key, recipient_id, kind, payload)
    select 'session_ended_no_credit:' || ${s.id}::bigint || ':' || r.uid, r.uid, ${NO_CREDIT_NOTICE_KIND}, ${payload}::jsonb
      from (values (${s.patient_id}::bigint), (${s.doctor_id}::bigint)) as r(uid)
        on conflict (dedupe_key) do nothing`.execute(trx);
}
