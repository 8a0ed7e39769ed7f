/**
 * The three legacy, appointment-addressed billing endpoints behind the SessionContextGuard
 * (its decision table: `guard/decision.ts`): `end-session`, `process-payment`, `process-deduction`.
 *
 * - participants only (a stranger gets 403, an unknown appointment 404) — checked before the
 *   guard, so a stranger learns nothing about the appointment's session;
 * - the appointment has a session: under ENFORCE_SESSION_GATED_BILLING → 400
 *   SESSION_BILLING_REQUIRED and nothing changes; without it → counted as would-block and
 *   delegated to the session's own billing (end the session / bring its billing up to date) —
 *   never a second, appointment-based charge for time the session bills;
 * - no session (a true legacy appointment) → billed through the same ledger, keyed by
 *   appointment: the appointment's units follow the elapsed-time rule, and the ledger's
 *   (appointment_id, unit_no) high-water mark makes every path add up to at most that many.
 *   end-session and process-payment run once per appointment (legacy_billing_ops primary key);
 *   deductions are capped by the rule and idempotent by `Idempotency-Key`.
 *
 * The decision for an appointment without a session is taken under its row lock, so a session
 * created concurrently (the single writer locks the same row) is never billed twice.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Appointment, Executor, Session, Trx } from '../../db/types.js';
import { DomainError, conflict, notFound } from '../../lib/errors.js';
import { assertParticipant, type Actor } from '../access.js';
import { getAppointmentOrThrow } from '../appointments/service.js';
import { decideLegacyBilling, type BillingEndpoint } from '../guard/decision.js';
import { recordGuardEvent } from '../guard/events.js';
import { contextOf, endSession } from '../sessions/service.js';
import { modalityForAppointmentType } from '../appointments/modality.js';
import { isLive } from '../sessions/state.js';
import { usableCredits } from '../users/credits.js';
import { chargeRange, payoutRates, type ChargeReason } from './ledger.js';
import { legacyConsultationHappened } from './legacy-participation.js';
import {
  claimIdempotencyKey,
  hashRequest,
  type LegacyBillingData,
  type LegacyBillingRequest,
  type LegacyBillingResponse,
  type PaymentProcessing,
} from './legacy-requests.js';
import { legacyAppointmentUnits, payoutPerUnit, type Money } from './pricing.js';
import { billSession } from './session-billing.js';

export {
  DEDUCTION_REASONS,
  type DeductionInput,
  type LegacyBillingData,
  type LegacyBillingRequest,
  type LegacyBillingResponse,
  type PaymentProcessing,
} from './legacy-requests.js';

/** The 400 messages the original endpoints used, kept for the clients that show them. */
const BLOCK_MESSAGES: Record<BillingEndpoint, string> = {
  'end-session': 'Session must be ended through session completion endpoint, not appointment endpoint',
  'process-payment': 'Billing must be processed through session completion, not appointment endpoint',
  'process-deduction': 'Billing must be processed through session auto-deduction, not appointment endpoint',
};

const REASON: Record<BillingEndpoint, ChargeReason> = {
  'end-session': 'legacy_end_session',
  'process-payment': 'legacy_process_payment',
  'process-deduction': 'legacy_process_deduction',
};

/** Appointment statuses a legacy consultation can be billed in: started, or ended, by the old flow. */
const LEGACY_BILLABLE = new Set(['in_progress', 'completed']);

export async function legacyBilling(ctx: AppContext, actor: Actor, req: LegacyBillingRequest): Promise<LegacyBillingResponse> {
  const a = await getAppointmentOrThrow(ctx.db, req.appointmentId);
  assertParticipant(actor, a);
  const enforce = (await ctx.flags.current()).ENFORCE_SESSION_GATED_BILLING;

  let sessionId = a.session_id;
  if (sessionId === null) {
    const legacy = await billLegacyAppointment(ctx, actor, req);
    if (legacy.kind === 'done') {
      ctx.log.info(
        {
          appointment_id: a.id,
          endpoint: req.endpoint,
          user_id: actor.id,
          units_charged: legacy.response.body.data.units_charged,
          replayed: legacy.response.replayed,
        },
        'SessionContextGuard: Billing allowed (legacy appointment without session)',
      );
      await guardEvent(ctx, {
        endpoint: req.endpoint,
        outcome: 'allowed_legacy',
        enforced: enforce,
        appointmentId: a.id,
        sessionId: null,
        userId: actor.id,
      });
      return legacy.response;
    }
    sessionId = legacy.sessionId; // a session was linked meanwhile: the guard applies
  }
  return guardedSessionBilling(ctx, actor, req, a, sessionId, enforce);
}

async function guardedSessionBilling(
  ctx: AppContext,
  actor: Actor,
  req: LegacyBillingRequest,
  a: Appointment,
  sessionId: number,
  enforce: boolean,
): Promise<LegacyBillingResponse> {
  const before = await ctx.db.selectFrom('sessions').selectAll().where('id', '=', sessionId).executeTakeFirst();
  if (!before) throw notFound('Session', { session_id: sessionId });
  const sessionContext = contextOf(before);
  const ids = { appointment_id: a.id, session_id: sessionId, session_context: sessionContext };
  const decision = decideLegacyBilling({ sessionId, enforceBilling: enforce });
  if (decision.action === 'block') {
    ctx.metrics.guard.billingBlocked.inc({ endpoint: req.endpoint, enforced: 'true' });
    ctx.log.warn({ ...ids, endpoint: req.endpoint, user_id: actor.id, enforced: true }, 'SessionContextGuard: Billing blocked');
    await guardEvent(ctx, { endpoint: req.endpoint, outcome: 'blocked', enforced: true, appointmentId: a.id, sessionId, userId: actor.id });
    throw new DomainError(decision.errorCode, BLOCK_MESSAGES[req.endpoint], ids);
  }
  if (decision.action !== 'delegate_session') throw new Error('unreachable: an appointment with a session is never billed as legacy');

  ctx.metrics.guard.billingBlocked.inc({ endpoint: req.endpoint, enforced: 'false' });
  ctx.log.warn(
    { ...ids, endpoint: req.endpoint, user_id: actor.id, enforced: false, would_block: true },
    'SessionContextGuard: Billing allowed (would block under enforcement): delegated to session billing',
  );
  await guardEvent(ctx, {
    endpoint: req.endpoint,
    outcome: 'would_block',
    enforced: false,
    appointmentId: a.id,
    sessionId,
    userId: actor.id,
  });

  // What THIS request charged, measured under the session's row lock (a concurrent request's
  // units are its own): the sum over concurrent answers equals the ledger.
  let charged: number;
  let wasLive: boolean;
  if (req.endpoint === 'end-session') {
    const r = await endSession(ctx, actor, sessionContext);
    charged = r.after.units_billed - r.before.units_billed;
    wasLive = isLive(r.before.status);
  } else {
    const r = await billSession(ctx, sessionId, { skipLocked: false });
    charged = r.result === 'skipped' || r.result === 'idle' ? 0 : r.charged;
    wasLive = true;
  }

  const after = await ctx.db.selectFrom('sessions').selectAll().where('id', '=', sessionId).executeTakeFirstOrThrow();
  const appointment = await getAppointmentOrThrow(ctx.db, a.id);
  const payout = await doctorPayout(ctx, ctx.db, after.doctor_id);
  const already = req.endpoint === 'end-session' ? !wasLive : charged === 0;
  const data: LegacyBillingData = {
    ...ids,
    appointment_status: appointment.status,
    billed_through: 'session',
    already_processed: already,
    units_charged: charged,
    units_total: after.units_billed,
    payment_processing: processing(payout, charged, []),
  };
  if (req.endpoint === 'process-deduction' && req.deduction) {
    Object.assign(data, {
      sessions_deducted: charged,
      sessions_requested: req.deduction.sessions_to_deduct,
      remaining_sessions: await usableCredits(ctx.db, after.patient_id, after.modality),
      reason: req.deduction.reason,
    });
  }
  return { status: 200, replayed: false, body: { success: true, message: messageFor(req.endpoint, already, after), data } };
}

function messageFor(endpoint: BillingEndpoint, already: boolean, s?: Session): string {
  const via = s ? ` (billed through ${contextOf(s)})` : '';
  switch (endpoint) {
    case 'end-session':
      return (already ? 'Session was already ended' : 'Session ended successfully') + via;
    case 'process-payment':
      return (already ? 'Payment was already processed' : 'Payment processed successfully') + via;
    case 'process-deduction':
      return 'Session deduction processed successfully' + via;
  }
}

function processing(payout: Money, units: number, errors: string[]): PaymentProcessing {
  const minor = payout.minor * units;
  return {
    doctor_payment_success: errors.length === 0,
    patient_deduction_success: errors.length === 0,
    doctor_payment_amount: minor / 100,
    doctor_payment_amount_minor: minor,
    doctor_payment_currency: payout.currency,
    patient_sessions_deducted: units,
    errors,
  };
}

async function doctorPayout(ctx: Pick<AppContext, 'config'>, db: Executor, doctorId: number): Promise<Money> {
  const d = await db.selectFrom('users').select('country').where('id', '=', doctorId).executeTakeFirst();
  return payoutPerUnit(d?.country ?? null, payoutRates(ctx));
}

async function guardEvent(
  ctx: AppContext,
  e: {
    endpoint: BillingEndpoint;
    outcome: 'blocked' | 'would_block' | 'allowed_legacy';
    enforced: boolean;
    appointmentId: number;
    sessionId: number | null;
    userId: number;
  },
): Promise<void> {
  try {
    await recordGuardEvent(ctx.db, { guard: 'billing', operation: e.endpoint, ...e });
  } catch (err) {
    // The decision stands (and the metric and log line carry it); a lost record must not turn
    // a correct answer into a 500.
    ctx.log.error({ err, appointment_id: e.appointmentId, endpoint: e.endpoint }, 'could not record the billing guard event');
  }
}

type LegacyOutcome = { kind: 'done'; response: LegacyBillingResponse } | { kind: 'has_session'; sessionId: number };

/** Billing of an appointment that has no session, under its row lock. */
async function billLegacyAppointment(ctx: AppContext, actor: Actor, req: LegacyBillingRequest): Promise<LegacyOutcome> {
  return ctx.db.transaction().execute(async (trx): Promise<LegacyOutcome> => {
    const a = await trx.selectFrom('appointments').selectAll().where('id', '=', req.appointmentId).forUpdate().executeTakeFirst();
    if (!a) throw notFound('Appointment', { appointment_id: req.appointmentId });
    if (a.session_id !== null) return { kind: 'has_session', sessionId: a.session_id };

    const key = req.endpoint === 'process-deduction' ? req.idempotencyKey : undefined;
    const requestHash = hashRequest(req);
    if (key !== undefined) {
      const replay = await claimIdempotencyKey(trx, actor.id, req.endpoint, key, requestHash);
      if (replay) return { kind: 'done', response: replay };
    }

    const modality = modalityForAppointmentType(a.appointment_type);
    if (!modality) throw conflict(`Appointment type "${a.appointment_type}" cannot be billed`, { appointment_id: a.id });
    if (!LEGACY_BILLABLE.has(a.status)) {
      throw conflict(`A ${a.status} appointment has no consultation to bill`, { appointment_id: a.id, appointment_status: a.status });
    }

    const { now } = (await sql<{ now: Date }>`select now() as now`.execute(trx)).rows[0]!;
    const billedSoFar = await appointmentUnitsBilled(trx, a.id);
    const tookPart = await legacyConsultationHappened(trx, a.id);
    const endOp = await trx
      .selectFrom('legacy_billing_ops')
      .select('units')
      .where('appointment_id', '=', a.id)
      .where('operation', '=', 'end-session')
      .executeTakeFirst();
    // Once ended, the appointment's cost is frozen at what it was at the end.
    // Nobody billed for a clock: without both participants there was no consultation (0 units).
    const dueNow =
      endOp?.units ??
      (tookPart
        ? legacyAppointmentUnits({
            startedAt: a.legacy_started_at ?? a.scheduled_at,
            at: new Date(now),
            durationMinutes: a.duration_minutes,
          })
        : 0);

    let target: number;
    let appointmentStatus = a.status;
    if (req.endpoint === 'process-deduction') {
      target = Math.min(billedSoFar + req.deduction!.sessions_to_deduct, dueNow);
    } else {
      if (req.endpoint === 'process-payment' && !tookPart && !endOp) {
        // Nothing to pay yet; recorded nowhere, so a payment after both took part still bills.
        const payout = await doctorPayout(ctx, trx, a.doctor_id);
        return { kind: 'done', response: legacyResponse(req, a, appointmentStatus, false, 0, billedSoFar, processing(payout, 0, [])) };
      }
      if (req.endpoint === 'end-session' && a.status === 'in_progress') {
        // As the legacy process-sessions would: a consultation only when both took part.
        appointmentStatus = tookPart ? 'completed' : 'missed';
        await trx.updateTable('appointments').set({ status: appointmentStatus }).where('id', '=', a.id).execute();
      }
      const op = await trx
        .insertInto('legacy_billing_ops')
        .values({ appointment_id: a.id, operation: req.endpoint, units: dueNow })
        .onConflict((oc) => oc.columns(['appointment_id', 'operation']).doNothing())
        .returning('units')
        .executeTakeFirst();
      if (!op) {
        const payout = await doctorPayout(ctx, trx, a.doctor_id);
        return { kind: 'done', response: legacyResponse(req, a, appointmentStatus, true, 0, billedSoFar, processing(payout, 0, [])) };
      }
      target = dueNow;
    }

    const r = await chargeRange(trx, ctx, {
      target: { appointment_id: a.id },
      patientId: a.patient_id,
      doctorId: a.doctor_id,
      modality,
      fromUnit: billedSoFar + 1,
      toUnit: target,
      reason: REASON[req.endpoint],
    });
    const unpaid = Math.max(0, target - r.lastUnit);
    // Nothing could be paid: a payment or deduction fails (and leaves no trace, so it can be
    // retried after the patient buys credits); ending still ends the appointment.
    if (r.exhausted && r.charged === 0 && req.endpoint !== 'end-session') {
      throw new DomainError('INSUFFICIENT_CREDITS', `No ${modality} credits left to pay for this appointment`, {
        appointment_id: a.id,
        modality,
        units_due: target - billedSoFar,
      });
    }
    const errors = unpaid > 0 ? [`Insufficient ${modality} credits: ${unpaid} unit(s) could not be charged`] : [];
    const response = legacyResponse(
      req,
      a,
      appointmentStatus,
      false,
      r.charged,
      Math.max(billedSoFar, r.lastUnit),
      processing(r.payout, r.charged, errors),
    );
    if (req.endpoint === 'process-deduction') {
      Object.assign(response.body.data, {
        sessions_deducted: r.charged,
        sessions_requested: req.deduction!.sessions_to_deduct,
        remaining_sessions: await usableCredits(trx, a.patient_id, modality),
        reason: req.deduction!.reason,
      });
    }
    if (key !== undefined) {
      await trx
        .updateTable('idempotency_keys')
        .set({ response_status: response.status, response_body: JSON.stringify(response.body) })
        .where('user_id', '=', actor.id)
        .where('scope', '=', req.endpoint)
        .where('key', '=', key)
        .execute();
    }
    return { kind: 'done', response };
  });
}

function legacyResponse(
  req: LegacyBillingRequest,
  a: Appointment,
  appointmentStatus: string,
  already: boolean,
  charged: number,
  total: number,
  pay: PaymentProcessing,
): LegacyBillingResponse {
  return {
    status: 200,
    replayed: false,
    body: {
      success: true,
      message: messageFor(req.endpoint, already),
      data: {
        appointment_id: a.id,
        appointment_status: appointmentStatus,
        session_id: null,
        session_context: null,
        billed_through: 'appointment',
        already_processed: already,
        units_charged: charged,
        units_total: total,
        payment_processing: pay,
      },
    },
  };
}

/** Highest unit charged for a legacy appointment (its ledger high-water mark). */
export async function appointmentUnitsBilled(trx: Trx, appointmentId: number): Promise<number> {
  const r = await sql<{
    n: number;
  }>`select coalesce(max(unit_no), 0)::int as n from ledger_entries where appointment_id = ${appointmentId}`.execute(trx);
  return r.rows[0]?.n ?? 0;
}
