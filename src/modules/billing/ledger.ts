/**
 * The ledger: one append-only row per charged unit. A row is the patient debit (one credit of
 * one subscription) and the doctor credit (the payout) at once, so neither can exist without the
 * other; the subscription's remaining credits and the doctor's wallet balance are caches of the
 * ledger, written in the same transaction (billing:audit recomputes them).
 *
 * Exactly-once per unit:
 * - the caller holds the lock of what is billed (the session row, or the appointment row for a
 *   legacy appointment), so charges of one session/appointment are serialised, and its
 *   high-water mark (`sessions.units_billed`, the ledger's max unit_no) is read under that lock;
 * - the ledger row is unique per (session_id, unit_no) / (appointment_id, unit_no): a row that
 *   already exists means "already charged", and then nothing else is written for that unit;
 * - the patient's subscriptions are row-locked (`FOR UPDATE`, no SKIP LOCKED: skipping a locked
 *   older subscription would spend a newer one first), always in FIFO order (expires_at, id), so
 *   two transactions spending the same patient's credits queue instead of deadlocking.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Modality, Session, Trx } from '../../db/types.js';
import { DomainError, notFound } from '../../lib/errors.js';
import { payoutPerUnit, type Money, type PayoutRates } from './pricing.js';
import { remainingColumn } from '../users/credits.js';

/** Why units were charged (ledger `reason`, metric label `reason`: a closed set). */
export type ChargeReason = 'periodic' | 'session_end' | 'legacy_end_session' | 'legacy_process_payment' | 'legacy_process_deduction';

/** What a charge is keyed by: a session, or a legacy appointment that has no session. */
export type ChargeTarget = { session_id: number } | { appointment_id: number };

export interface ChargeRange {
  target: ChargeTarget;
  patientId: number;
  doctorId: number;
  modality: Modality;
  /** First unit number to charge (units below are already charged). */
  fromUnit: number;
  /** Last unit number to charge, inclusive. */
  toUnit: number;
  reason: ChargeReason;
}

export interface ChargeResult {
  /** Ledger rows written by this call. */
  charged: number;
  /** The highest unit now charged (fromUnit - 1 when nothing was). */
  lastUnit: number;
  /** The patient ran out of usable credits before `toUnit`. */
  exhausted: boolean;
  /** The doctor's payout per unit (what each row credited). */
  payout: Money;
}

/**
 * What billing needs besides the transaction: its configuration, metrics and logger (never the
 * database handle — code inside a transaction uses the transaction).
 */
export type BillingDeps = Pick<AppContext, 'config' | 'metrics' | 'log'>;

export const payoutRates = (ctx: Pick<AppContext, 'config'>): PayoutRates => ({
  mwkMinor: ctx.config.payoutRateMwkMinor,
  usdMinor: ctx.config.payoutRateUsdMinor,
});

/**
 * Charges units `fromUnit..toUnit` of a session or legacy appointment, oldest usable credit
 * first, stopping at the first unit the patient cannot pay. The caller holds the target's row
 * lock. Per unit: lock the patient's oldest usable subscription → insert the ledger row (a
 * conflict means the unit is already charged: skip it, spend nothing) → spend the credit.
 * The doctor's wallet is credited once for all new rows at the end; a wallet's currency never
 * changes, so a payout in another currency (the doctor moved country) fails the whole charge
 * loudly instead of mixing currencies in one balance.
 */
export async function chargeRange(trx: Trx, ctx: BillingDeps, input: ChargeRange): Promise<ChargeResult> {
  const doctor = await trx.selectFrom('users').select(['id', 'country']).where('id', '=', input.doctorId).executeTakeFirst();
  if (!doctor) throw notFound('Doctor', { doctor_id: input.doctorId });
  const payout = payoutPerUnit(doctor.country, payoutRates(ctx));
  const col = remainingColumn(input.modality);
  const sessionId = 'session_id' in input.target ? input.target.session_id : null;
  const appointmentId = 'appointment_id' in input.target ? input.target.appointment_id : null;

  let charged = 0;
  let lastUnit = input.fromUnit - 1;
  let exhausted = false;
  for (let unit = input.fromUnit; unit <= input.toUnit; unit++) {
    const sub = await sql<{ id: number }>`
      select id from subscriptions
       where patient_id = ${input.patientId} and ${sql.ref(col)} > 0
         and starts_at <= now() and expires_at > now()
       order by expires_at, id
       limit 1
         for update`.execute(trx);
    const subscriptionId = sub.rows[0]?.id;
    if (subscriptionId === undefined) {
      exhausted = true;
      break;
    }
    const conflictTarget =
      sessionId !== null
        ? sql`(session_id, unit_no) where session_id is not null`
        : sql`(appointment_id, unit_no) where appointment_id is not null`;
    const inserted = await sql<{ id: number }>`
      insert into ledger_entries
        (session_id, appointment_id, unit_no, patient_id, doctor_id, subscription_id, modality,
         doctor_amount_minor, doctor_currency, reason)
      values (${sessionId}, ${appointmentId}, ${unit}, ${input.patientId}, ${input.doctorId}, ${subscriptionId},
              ${input.modality}, ${payout.minor}, ${payout.currency}, ${input.reason})
      on conflict ${conflictTarget} do nothing
      returning id`.execute(trx);
    lastUnit = unit;
    if (inserted.rows.length === 0) continue; // charged before: the row is the proof; spend nothing
    const spent = await sql<{ id: number }>`
      update subscriptions set ${sql.ref(col)} = ${sql.ref(col)} - 1
       where id = ${subscriptionId} and ${sql.ref(col)} > 0
      returning id`.execute(trx);
    // We hold the row lock and saw a credit, so this cannot miss; if it ever did, the ledger row
    // would be a debit without its credit: abort the whole transaction instead.
    if (spent.rows.length !== 1) throw new Error(`subscription ${subscriptionId} lost its credit under lock`);
    charged++;
  }

  if (charged > 0) {
    await creditWallet(trx, input.doctorId, { currency: payout.currency, minor: payout.minor * charged });
    ctx.metrics.billing.unitsCharged.inc({ modality: input.modality, reason: input.reason }, charged);
  }
  return { charged, lastUnit, exhausted, payout };
}

/** Adds to the doctor's wallet, creating it in the payout's currency on the first credit. */
async function creditWallet(trx: Trx, doctorId: number, amount: Money): Promise<void> {
  const credited = await sql<{ currency: string }>`
    insert into doctor_wallets (doctor_id, currency, balance_minor)
    values (${doctorId}, ${amount.currency}, ${amount.minor})
    on conflict (doctor_id) do update
       set balance_minor = doctor_wallets.balance_minor + excluded.balance_minor, updated_at = now()
     where doctor_wallets.currency = excluded.currency
    returning currency`.execute(trx);
  if (credited.rows.length === 0) {
    const wallet = await trx.selectFrom('doctor_wallets').select('currency').where('doctor_id', '=', doctorId).executeTakeFirst();
    throw new DomainError(
      'CONFLICT',
      `The doctor's wallet is in ${wallet?.currency ?? '?'} but the payout is in ${amount.currency}; an operator must resolve the wallet currency before this doctor can be paid`,
      {
        doctor_id: doctorId,
        wallet_currency: wallet?.currency ?? null,
        payout_currency: amount.currency,
      },
    );
  }
}

/**
 * Charges a locked session's units `units_billed + 1 .. upToUnit` and advances its high-water
 * mark, in the caller's transaction. Returns the updated session row.
 */
export async function chargeUnits(
  trx: Trx,
  ctx: BillingDeps,
  session: Session,
  upToUnit: number,
  reason: ChargeReason,
): Promise<{ session: Session; charged: number; exhausted: boolean }> {
  if (upToUnit <= session.units_billed) return { session, charged: 0, exhausted: false };
  const r = await chargeRange(trx, ctx, {
    target: { session_id: session.id },
    patientId: session.patient_id,
    doctorId: session.doctor_id,
    modality: session.modality,
    fromUnit: session.units_billed + 1,
    toUnit: upToUnit,
    reason,
  });
  if (r.lastUnit <= session.units_billed) return { session, charged: 0, exhausted: r.exhausted };
  const updated = await trx
    .updateTable('sessions')
    .set({ units_billed: r.lastUnit })
    .where('id', '=', session.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return { session: updated, charged: r.charged, exhausted: r.exhausted };
}
