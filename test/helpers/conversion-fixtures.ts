/** Bulk fixtures and invariant checks shared by the conversion reliability tests. */
import { sql } from 'kysely';
import { expect } from 'vitest';
import type { Db } from '../../src/db/types.js';

/** `n` due appointments, each with its own patient (one live session per patient), 40 doctors. */
export async function dueAppointments(db: Db, n: number, tag: string): Promise<number[]> {
  await sql`insert into users (role, name) select 'doctor', ${tag} || ' doctor ' || g from generate_series(1, 40) g`.execute(db);
  await sql`insert into users (role, name) select 'patient', ${tag} || ' patient ' || g from generate_series(1, ${n}) g`.execute(db);
  const r = await sql<{ id: number }>`
    with p as (select id, row_number() over (order by id) as g from users where role = 'patient' and name like ${tag + ' patient %'}),
         d as (select id, row_number() over (order by id) - 1 as k from users where role = 'doctor' and name like ${tag + ' doctor %'})
    insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
    select p.id, d.id, (array['text', 'audio', 'voice', 'video'])[1 + p.g % 4], 'confirmed',
           now() - interval '2 seconds' - p.g * interval '1 second'
      from p join d on d.k = p.g % 40
    returning id`.execute(db);
  return r.rows.map((x) => Number(x.id));
}

/** The invariants that must hold at every moment. */
export async function assertLinkInvariants(db: Db) {
  const r = await sql<{
    dangling: number;
    unlinked_sessions: number;
    wrong_status: number;
    missing_outbox: number;
    missing_record: number;
  }>`
    select
      (select count(*)::int from appointments a left join sessions s on s.id = a.session_id
        where a.session_id is not null and s.id is null) as dangling,
      (select count(*)::int from sessions s join appointments a on a.id = s.appointment_id
        where a.session_id is distinct from s.id) as unlinked_sessions,
      (select count(*)::int from appointments a join sessions s on s.id = a.session_id
        where s.appointment_id is distinct from a.id or a.status = 'confirmed') as wrong_status,
      (select count(*)::int from appointments a
        where a.session_id is not null
          and (select count(*) from notification_outbox o
                where o.dedupe_key = 'session_started:' || a.id || ':' || a.session_id
                  and o.recipient_id = a.patient_id and o.also_notify = array[a.doctor_id]) <> 1) as missing_outbox,
      (select count(*)::int from appointments a
        where a.session_id is not null
          and not exists (select 1 from appointment_conversions c where c.appointment_id = a.id and c.result = 'created' and c.session_id = a.session_id)) as missing_record`.execute(
    db,
  );
  expect(r.rows[0]).toEqual({ dangling: 0, unlinked_sessions: 0, wrong_status: 0, missing_outbox: 0, missing_record: 0 });
}
