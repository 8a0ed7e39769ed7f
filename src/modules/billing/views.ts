/**
 * Read models: a session's billing (participants and admins) and a doctor's wallet. What each
 * party sees of a ledger row: the patient sees which of their subscriptions paid, the doctor
 * sees what they earned; an admin sees both.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Executor, Session } from '../../db/types.js';
import { iso } from '../../lib/schemas.js';
import { accessOf, type Actor } from '../access.js';
import { contextOf, readableSession } from '../sessions/service.js';
import { formatSessionContext } from '../session-context.js';
import { isLive } from '../sessions/state.js';
import { billableStart, expectedUnits } from './hooks.js';
import { payoutRates } from './ledger.js';
import { UNIT_SECONDS, payoutPerUnit } from './pricing.js';
import { usableCredits } from '../users/credits.js';

/** Minor units as a decimal string with two places (both wallet currencies have 100 minor units). */
export const formatMinor = (minor: number): string => {
  const sign = minor < 0 ? '-' : '';
  const abs = Math.abs(minor);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
};

export async function sessionBilling(ctx: AppContext, actor: Actor, rawContext: string) {
  const s = await readableSession(ctx.db, actor, rawContext);
  const access = accessOf(actor, s);
  const rows = await ctx.db
    .selectFrom('ledger_entries')
    .select(['id', 'unit_no', 'subscription_id', 'modality', 'credits', 'doctor_amount_minor', 'doctor_currency', 'reason', 'created_at'])
    .where('session_id', '=', s.id)
    .orderBy('unit_no')
    .execute();
  const ended = !isLive(s.status);
  return {
    session_id: s.id,
    session_context: contextOf(s),
    status: s.status,
    modality: s.modality,
    end_reason: s.end_reason,
    billable_from: iso(billableStart(s)),
    ended_at: iso(s.ended_at),
    credits_at_start: s.credits_at_start,
    units_billed: s.units_billed,
    units_expected: ended ? expectedUnits(s) : null,
    settled: s.settled_at !== null,
    settled_at: iso(s.settled_at),
    entries: rows.map((e) => ({
      id: e.id,
      unit_no: e.unit_no,
      modality: e.modality,
      credits: e.credits,
      reason: e.reason,
      created_at: iso(e.created_at)!,
      subscription_id: access === 'doctor' ? null : e.subscription_id,
      doctor_amount_minor: access === 'patient' ? null : e.doctor_amount_minor,
      doctor_currency: access === 'patient' ? null : e.doctor_currency,
    })),
  };
}

export async function doctorWallet(ctx: AppContext, doctor: Actor & { country: string | null }, page: { before?: number; limit: number }) {
  const wallet = await ctx.db.selectFrom('doctor_wallets').selectAll().where('doctor_id', '=', doctor.id).executeTakeFirst();
  const rate = payoutPerUnit(doctor.country, payoutRates(ctx));
  const rows = await walletEntries(ctx.db, doctor.id, page.before, page.limit + 1);
  const more = rows.length > page.limit;
  const entries = rows.slice(0, page.limit);
  const balance = wallet?.balance_minor ?? 0;
  return {
    doctor_id: doctor.id,
    // Before the first credit there is no wallet yet; it will be opened in the payout currency.
    currency: wallet?.currency ?? rate.currency,
    balance_minor: balance,
    balance: formatMinor(balance),
    payout_per_unit: { currency: rate.currency, amount_minor: rate.minor, amount: formatMinor(rate.minor) },
    entries: entries.map((e) => ({
      id: e.id,
      session_id: e.session_id,
      session_context: e.session_id !== null && e.kind !== null ? formatSessionContext(e.kind, e.session_id) : null,
      appointment_id: e.appointment_id ?? e.session_appointment_id,
      unit_no: e.unit_no,
      modality: e.modality,
      amount_minor: e.doctor_amount_minor,
      amount: formatMinor(e.doctor_amount_minor),
      currency: e.doctor_currency,
      reason: e.reason,
      created_at: iso(e.created_at)!,
    })),
    // Keyset pagination: pass `before=<next_before>` for the next (older) page.
    next_before: more ? entries[entries.length - 1]!.id : null,
  };
}

function walletEntries(db: Executor, doctorId: number, before: number | undefined, limit: number) {
  let q = db
    .selectFrom('ledger_entries as l')
    .leftJoin('sessions as s', 's.id', 'l.session_id')
    .select([
      'l.id',
      'l.session_id',
      'l.appointment_id',
      's.appointment_id as session_appointment_id',
      's.kind',
      'l.unit_no',
      'l.modality',
      'l.doctor_amount_minor',
      'l.doctor_currency',
      'l.reason',
      'l.created_at',
    ])
    .where('l.doctor_id', '=', doctorId)
    .orderBy('l.id', 'desc')
    .limit(limit);
  if (before !== undefined) q = q.where('l.id', '<', before);
  return q.execute();
}

/** One doctor ledger credit, for clients that page wallet history by number. */
export interface WalletTransaction {
  id: number;
  session_id: number | null;
  appointment_id: number | null;
  patient_id: number;
  unit_no: number;
  modality: 'text' | 'voice' | 'video';
  amount_minor: number;
  currency: 'MWK' | 'USD';
  reason: string;
  created_at: Date;
}

/** A numbered page of the doctor's ledger credits (newest first) with the total count. */
export async function walletTransactionsPage(
  db: Executor,
  doctorId: number,
  page: { page: number; perPage: number },
): Promise<{ rows: WalletTransaction[]; total: number }> {
  const base = db.selectFrom('ledger_entries as l').leftJoin('sessions as s', 's.id', 'l.session_id').where('l.doctor_id', '=', doctorId);
  const [rows, count] = await Promise.all([
    base
      .select([
        'l.id',
        'l.session_id',
        sql<number | null>`coalesce(l.appointment_id, s.appointment_id)`.as('appointment_id'),
        'l.patient_id',
        'l.unit_no',
        'l.modality',
        'l.doctor_amount_minor as amount_minor',
        'l.doctor_currency as currency',
        'l.reason',
        'l.created_at',
      ])
      .orderBy('l.id', 'desc')
      .limit(page.perPage)
      .offset((page.page - 1) * page.perPage)
      .execute(),
    base.select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow(),
  ]);
  return { rows, total: count.n };
}

/** What a doctor has earned: the sum of their ledger credits, in total and per modality. */
export async function doctorEarnings(
  db: Executor,
  doctorId: number,
): Promise<{ total_minor: number; units: number; by_modality: Record<'text' | 'voice' | 'video', number> }> {
  const rows = await db
    .selectFrom('ledger_entries')
    .select(['modality', sql<number>`sum(doctor_amount_minor)::bigint`.as('minor'), sql<number>`count(*)::int`.as('units')])
    .where('doctor_id', '=', doctorId)
    .groupBy('modality')
    .execute();
  const by_modality = { text: 0, voice: 0, video: 0 };
  let units = 0;
  for (const r of rows) {
    by_modality[r.modality] = Number(r.minor);
    units += r.units;
  }
  return { total_minor: by_modality.text + by_modality.voice + by_modality.video, units, by_modality };
}

/**
 * How much consultation time a session has left, as the server bills it: every started 10-minute
 * unit must be paid at its end, so a live session runs until `(units billed + usable credits)`
 * units after its billable start. Before the billable start the clock has not begun.
 */
export async function sessionAllowance(ctx: AppContext, s: Session) {
  const start = billableStart(s);
  const end = s.ended_at ?? ctx.now();
  const elapsedMinutes = start ? Math.max(0, Math.floor((end.getTime() - start.getTime()) / 60_000)) : 0;
  const credits = await usableCredits(ctx.db, s.patient_id, s.modality);
  const unitMinutes = UNIT_SECONDS / 60;
  let remainingMinutes = 0;
  if (isLive(s.status))
    remainingMinutes = start ? Math.max(0, (s.units_billed + credits) * unitMinutes - elapsedMinutes) : credits * unitMinutes;
  return { credits, elapsed_minutes: elapsedMinutes, remaining_minutes: remainingMinutes, units_billed: s.units_billed };
}
