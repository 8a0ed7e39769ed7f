/**
 * Billing's side of the session lifecycle: the `SessionHooks` the sessions module calls inside
 * its transactions (a start the patient cannot pay for is refused; an ended session is settled).
 * `createContext` connects them (`billingSessionHooks`).
 */
import { sql } from 'kysely';
import type { Modality, Session, Trx } from '../../db/types.js';
import { DomainError } from '../../lib/errors.js';
import type { SessionHooks } from '../sessions/hooks.js';
import { isLive } from '../sessions/state.js';
import { usableCredits } from '../users/credits.js';
import { chargeUnits, type BillingDeps } from './ledger.js';
import { enqueueNoCreditNotice } from './notices.js';
import { cappedUnits, unitBoundary, unitsAtEnd } from './pricing.js';

/** `end_reason` of a session the server ended because the patient's credits ran out. */
export const CREDITS_EXHAUSTED = 'credits_exhausted';

/** When billable time starts: the doctor's first message (text) or both joined (call). */
export const billableStart = (s: Pick<Session, 'kind' | 'activated_at' | 'connected_at'>): Date | null =>
  s.kind === 'text' ? s.activated_at : s.connected_at;

/**
 * Units an ended (or expired/missed) session costs in total. Expired and missed sessions never
 * became billable; a session ended for exhausted credits costs what was billed when it was cut;
 * never more than its allowed time covers (`cappedUnits`).
 */
export function expectedUnits(
  s: Pick<Session, 'kind' | 'status' | 'end_reason' | 'activated_at' | 'connected_at' | 'ended_at' | 'units_billed' | 'allowed_minutes'>,
): number {
  if (s.status !== 'ended' || s.ended_at === null) return 0;
  if (s.end_reason === CREDITS_EXHAUSTED) return s.units_billed;
  return cappedUnits(unitsAtEnd({ kind: s.kind, startedAt: billableStart(s), endedAt: s.ended_at }), s.allowed_minutes);
}

/**
 * Refuses (402 INSUFFICIENT_CREDITS) a session start the patient has no credit for: the
 * aggregate of unexpired subscriptions of that modality. Nothing is charged at start.
 */
export async function assertCreditsForStart(trx: Trx, patientId: number, modality: Modality): Promise<void> {
  const available = await usableCredits(trx, patientId, modality);
  if (available < 1) {
    throw new DomainError('INSUFFICIENT_CREDITS', `No ${modality} credits left: a ${modality} consultation needs at least one`, {
      patient_id: patientId,
      modality,
      credits: available,
    });
  }
}

/**
 * Settles a session that stopped being live: charges the units not yet charged (the periodic
 * tick may have charged some), exactly once per unit, then stamps `settled_at`. The caller holds
 * the session's row lock (the sessions service calls this from the transaction that ended it).
 *
 * If the patient cannot pay every unit (a subscription expired mid-session, or the session was
 * ended before the tick noticed the credits were gone), the session is recorded as what it was —
 * ended by exhausted credits at the billed boundary — and the doctor is credited only for the
 * units the patient paid. Returns the updated row.
 */
export async function settleEndedSession(trx: Trx, ctx: BillingDeps, session: Session): Promise<Session> {
  if (isLive(session.status) || session.settled_at !== null) return session;
  const target = Math.max(session.units_billed, expectedUnits(session));
  const charged = await chargeUnits(trx, ctx, session, target, 'session_end');
  let s = charged.session;
  const start = billableStart(s);
  if (charged.exhausted && s.units_billed < target && start !== null) {
    s = await trx
      .updateTable('sessions')
      .set({ end_reason: CREDITS_EXHAUSTED, ended_at: unitBoundary(start, s.units_billed) })
      .where('id', '=', s.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await enqueueNoCreditNotice(trx, s);
    ctx.metrics.billing.sessionsEndedNoCredit.inc();
    ctx.log.warn(
      { session_id: s.id, units_billed: s.units_billed, units_due: target, original_end_reason: session.end_reason },
      'session ended without credit for every unit; billed up to the last paid boundary',
    );
  }
  s = await trx
    .updateTable('sessions')
    .set({ settled_at: sql<Date>`now()` })
    .where('id', '=', s.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  ctx.log.info(
    { event: 'session_settled', session_id: s.id, units_billed: s.units_billed, units_charged_at_end: charged.charged, status: s.status },
    'session settled',
  );
  return s;
}

/** The session hooks billing implements, bound to what billing needs besides the transaction. */
export const billingSessionHooks = (deps: BillingDeps): SessionHooks => ({
  beforeStart: (trx, patientId, modality) => assertCreditsForStart(trx, patientId, modality),
  ended: (trx, session) => settleEndedSession(trx, deps, session),
});
