/**
 * The billing audit: proves that the cached balances are what the ledger says and that every
 * unit was charged exactly once. `sessiongate billing:audit` prints it; tests call it after
 * concurrency runs. Read-only.
 *
 * Checks:
 * - wallet_balance        every wallet's balance = the sum of its doctor's ledger credits in its
 *                         currency;
 * - wallet_currency       no ledger credit in a currency the doctor's wallet is not in (or
 *                         without a wallet);
 * - subscription_remaining every subscription's remaining credits of each modality = granted −
 *                         the ledger debits against it;
 * - duplicate_unit        no (session, unit) or (appointment, unit) charged twice;
 * - session_units         a session's ledger rows are exactly units 1..units_billed;
 * - appointment_units     a legacy appointment's ledger rows are exactly units 1..n;
 * - session_settlement    every ended/expired/missed session is settled (settled_at) and billed
 *                         exactly the units it costs (expectedUnits);
 * - session_overbilled    a running session is billed no more than its completed units, capped
 *                         by its allowed time;
 * - ledger_parties        no doctor credit without its patient's debit: the row's patient owns
 *                         the subscription it spent, and the row's patient, doctor and
 *                         modality are the session's (or the appointment's);
 * - double_billing        no appointment billed both as legacy and through a session.
 */
import { sql } from 'kysely';
import type { Executor, Session } from '../../db/types.js';
import { isLive } from '../sessions/state.js';
import { billableStart, expectedUnits } from './hooks.js';
import { cappedUnits, completedUnits } from './pricing.js';

export type AuditCheck =
  | 'wallet_balance'
  | 'wallet_currency'
  | 'subscription_remaining'
  | 'duplicate_unit'
  | 'session_units'
  | 'appointment_units'
  | 'session_settlement'
  | 'session_overbilled'
  | 'ledger_parties'
  | 'double_billing';

export interface AuditFinding {
  check: AuditCheck;
  message: string;
  ids: Record<string, number | string | null>;
}

export interface AuditReport {
  ok: boolean;
  checked: { ledger_entries: number; wallets: number; subscriptions: number; sessions: number };
  findings: AuditFinding[];
}

const SESSION_BATCH = 1000;

export async function auditBilling(db: Executor): Promise<AuditReport> {
  const findings: AuditFinding[] = [];
  const add = (check: AuditCheck, message: string, ids: AuditFinding['ids']) => findings.push({ check, message, ids });

  const wallets = await sql<{
    doctor_id: number;
    wallet_currency: string | null;
    balance_minor: number | null;
    ledger_currency: string | null;
    ledger_total: number | null;
  }>`
    with l as (
      select doctor_id, doctor_currency, sum(doctor_amount_minor)::bigint as total
        from ledger_entries group by doctor_id, doctor_currency
    )
    select coalesce(w.doctor_id, l.doctor_id) as doctor_id, w.currency as wallet_currency, w.balance_minor,
           l.doctor_currency as ledger_currency, l.total as ledger_total
      from doctor_wallets w
      full join l on l.doctor_id = w.doctor_id and l.doctor_currency = w.currency
     where w.doctor_id is null
        or (l.doctor_id is null and w.balance_minor <> 0)
        or w.balance_minor <> l.total
     order by 1`.execute(db);
  for (const w of wallets.rows) {
    if (w.wallet_currency === null) {
      add(
        'wallet_currency',
        `doctor ${w.doctor_id}: ${w.ledger_total} ${w.ledger_currency} of ledger credits but no wallet in ${w.ledger_currency}`,
        {
          doctor_id: w.doctor_id,
          currency: w.ledger_currency,
        },
      );
    } else {
      add(
        'wallet_balance',
        `doctor ${w.doctor_id}: wallet balance ${w.balance_minor} ${w.wallet_currency} but the ledger sums to ${w.ledger_total ?? 0}`,
        {
          doctor_id: w.doctor_id,
          currency: w.wallet_currency,
        },
      );
    }
  }

  const subs = await sql<{ id: number; patient_id: number; modality: string; granted: number; remaining: number; used: number }>`
    select s.id, s.patient_id, m.modality, m.granted, m.remaining, coalesce(u.used, 0)::int as used
      from subscriptions s
     cross join lateral (values ('text', s.text_credits, s.text_remaining),
                                ('voice', s.voice_credits, s.voice_remaining),
                                ('video', s.video_credits, s.video_remaining)) as m(modality, granted, remaining)
      left join (select subscription_id, modality, count(*) as used from ledger_entries group by 1, 2) u
        on u.subscription_id = s.id and u.modality = m.modality
     where m.remaining <> m.granted - coalesce(u.used, 0)
     order by s.id, m.modality`.execute(db);
  for (const s of subs.rows) {
    add(
      'subscription_remaining',
      `subscription ${s.id} (${s.modality}): ${s.remaining} remaining but ${s.granted} granted − ${s.used} charged = ${s.granted - s.used}`,
      {
        subscription_id: s.id,
        patient_id: s.patient_id,
        modality: s.modality,
      },
    );
  }

  const dupes = await sql<{ session_id: number | null; appointment_id: number | null; unit_no: number; n: number }>`
    select session_id, null::bigint as appointment_id, unit_no, count(*)::int as n
      from ledger_entries where session_id is not null group by session_id, unit_no having count(*) > 1
    union all
    select null, appointment_id, unit_no, count(*)::int
      from ledger_entries where appointment_id is not null group by appointment_id, unit_no having count(*) > 1`.execute(db);
  for (const d of dupes.rows) {
    const what = d.session_id !== null ? `session ${d.session_id}` : `appointment ${d.appointment_id}`;
    add('duplicate_unit', `${what}: unit ${d.unit_no} charged ${d.n} times`, {
      session_id: d.session_id,
      appointment_id: d.appointment_id,
      unit_no: d.unit_no,
    });
  }

  const sessionUnits = await sql<{ session_id: number; units_billed: number | null; rows: number; max_unit: number }>`
    with l as (select session_id, count(*)::int as n, max(unit_no)::int as max_unit
                 from ledger_entries where session_id is not null group by session_id)
    select coalesce(s.id, l.session_id) as session_id, s.units_billed, coalesce(l.n, 0) as rows, coalesce(l.max_unit, 0) as max_unit
      from (select id, units_billed from sessions where units_billed > 0) s
      full join l on l.session_id = s.id
     where coalesce(s.units_billed, 0) <> coalesce(l.n, 0) or coalesce(s.units_billed, 0) <> coalesce(l.max_unit, 0)
     order by 1`.execute(db);
  for (const u of sessionUnits.rows) {
    add(
      'session_units',
      `session ${u.session_id}: units_billed ${u.units_billed ?? 0} but the ledger holds ${u.rows} unit(s) up to unit ${u.max_unit}`,
      {
        session_id: u.session_id,
      },
    );
  }

  const apptUnits = await sql<{ appointment_id: number; rows: number; max_unit: number }>`
    select appointment_id, count(*)::int as rows, max(unit_no)::int as max_unit
      from ledger_entries where appointment_id is not null
     group by appointment_id having count(*) <> max(unit_no)`.execute(db);
  for (const u of apptUnits.rows) {
    add('appointment_units', `appointment ${u.appointment_id}: ${u.rows} ledger unit(s) but numbered up to ${u.max_unit}`, {
      appointment_id: u.appointment_id,
    });
  }

  const parties = await sql<{ id: number; problem: string; session_id: number | null; appointment_id: number | null }>`
    select l.id, 'subscription belongs to another patient' as problem, l.session_id, l.appointment_id
      from ledger_entries l join subscriptions s on s.id = l.subscription_id
     where s.patient_id <> l.patient_id
    union all
    select l.id, 'patient, doctor or modality differs from the session''s', l.session_id, l.appointment_id
      from ledger_entries l join sessions s on s.id = l.session_id
     where s.patient_id <> l.patient_id or s.doctor_id <> l.doctor_id or s.modality <> l.modality
    union all
    select l.id, 'patient or doctor differs from the appointment''s', l.session_id, l.appointment_id
      from ledger_entries l join appointments a on a.id = l.appointment_id
     where a.patient_id <> l.patient_id or a.doctor_id <> l.doctor_id
    order by 1`.execute(db);
  for (const p of parties.rows) {
    add('ledger_parties', `ledger entry ${p.id}: ${p.problem}`, {
      ledger_entry_id: p.id,
      session_id: p.session_id,
      appointment_id: p.appointment_id,
    });
  }

  const double = await sql<{ appointment_id: number; session_id: number }>`
    select distinct a.id as appointment_id, a.session_id
      from ledger_entries l join appointments a on a.id = l.appointment_id
     where a.session_id is not null
     order by 1`.execute(db);
  for (const d of double.rows) {
    add('double_billing', `appointment ${d.appointment_id} was billed as a legacy appointment although session ${d.session_id} bills it`, {
      appointment_id: d.appointment_id,
      session_id: d.session_id,
    });
  }

  let sessionsChecked = 0;
  const { now } = (await sql<{ now: Date }>`select now() as now`.execute(db)).rows[0]!;
  for (let afterId = 0; ;) {
    const batch: Session[] = await db
      .selectFrom('sessions')
      .selectAll()
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(SESSION_BATCH)
      .execute();
    for (const s of batch) {
      sessionsChecked++;
      const ids = { session_id: s.id, appointment_id: s.appointment_id };
      if (isLive(s.status)) {
        const start = billableStart(s);
        const allowed = start === null ? 0 : cappedUnits(completedUnits(start, new Date(now)), s.allowed_minutes);
        if (s.units_billed > allowed)
          add('session_overbilled', `session ${s.id} (${s.status}): ${s.units_billed} unit(s) billed but only ${allowed} completed`, ids);
        continue;
      }
      const expected = expectedUnits(s);
      if (s.settled_at === null) add('session_settlement', `session ${s.id} (${s.status}) is not settled`, ids);
      if (s.units_billed !== expected)
        add('session_settlement', `session ${s.id} (${s.status}): ${s.units_billed} unit(s) billed, ${expected} expected`, ids);
    }
    if (batch.length < SESSION_BATCH) break;
    afterId = batch[batch.length - 1]!.id;
  }

  const counts = (
    await sql<{ ledger_entries: number; wallets: number; subscriptions: number }>`
      select (select count(*) from ledger_entries)::int as ledger_entries,
             (select count(*) from doctor_wallets)::int as wallets,
             (select count(*) from subscriptions)::int as subscriptions`.execute(db)
  ).rows[0]!;
  return { ok: findings.length === 0, checked: { ...counts, sessions: sessionsChecked }, findings };
}
