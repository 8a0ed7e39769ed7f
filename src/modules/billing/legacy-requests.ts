/**
 * What a legacy billing request and its answer are (the three appointment-addressed endpoints),
 * and how a `process-deduction` is made idempotent by its `Idempotency-Key`.
 */
import { createHash } from 'node:crypto';
import type { Trx } from '../../db/types.js';
import { conflict } from '../../lib/errors.js';
import type { BillingEndpoint } from '../guard/decision.js';
import type { Money } from './pricing.js';

export const DEDUCTION_REASONS = ['interval', 'manual_end', 'no_activity'] as const;

export interface DeductionInput {
  appointment_id: number;
  sessions_to_deduct: number;
  reason: (typeof DEDUCTION_REASONS)[number];
}

export interface LegacyBillingRequest {
  endpoint: BillingEndpoint;
  appointmentId: number;
  deduction?: DeductionInput;
  idempotencyKey?: string;
}

export interface PaymentProcessing {
  doctor_payment_success: boolean;
  patient_deduction_success: boolean;
  doctor_payment_amount: number;
  doctor_payment_amount_minor: number;
  doctor_payment_currency: Money['currency'];
  patient_sessions_deducted: number;
  errors: string[];
}

export interface LegacyBillingData {
  appointment_id: number;
  appointment_status: string;
  session_id: number | null;
  session_context: string | null;
  billed_through: 'session' | 'appointment';
  already_processed: boolean;
  units_charged: number;
  units_total: number;
  payment_processing: PaymentProcessing;
  sessions_deducted?: number;
  sessions_requested?: number;
  remaining_sessions?: number;
  reason?: string;
}

export interface LegacyBillingResponse {
  status: number;
  replayed: boolean;
  body: { success: true; message: string; data: LegacyBillingData };
}

export function hashRequest(req: LegacyBillingRequest): string {
  const canonical = JSON.stringify([
    req.endpoint,
    req.appointmentId,
    req.deduction?.sessions_to_deduct ?? null,
    req.deduction?.reason ?? null,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

/**
 * Claims an Idempotency-Key in the caller's transaction. The first request inserts the key (a
 * concurrent one with the same key waits on the unique index until this one commits or rolls
 * back); a later one with the same request gets the stored response back; the same key with a
 * different request is a 409.
 */
export async function claimIdempotencyKey(
  trx: Trx,
  userId: number,
  scope: string,
  key: string,
  requestHash: string,
): Promise<LegacyBillingResponse | null> {
  const claimed = await trx
    .insertInto('idempotency_keys')
    .values({ user_id: userId, scope, key, request_hash: requestHash, response_status: 0, response_body: '{}' })
    .onConflict((oc) => oc.columns(['user_id', 'scope', 'key']).doNothing())
    .returning('key')
    .executeTakeFirst();
  if (claimed) return null;
  const prior = await trx
    .selectFrom('idempotency_keys')
    .select(['request_hash', 'response_status', 'response_body'])
    .where('user_id', '=', userId)
    .where('scope', '=', scope)
    .where('key', '=', key)
    .executeTakeFirstOrThrow();
  if (prior.request_hash !== requestHash) {
    throw conflict('This Idempotency-Key was already used for a different request', { idempotency_key: key });
  }
  return { status: prior.response_status, replayed: true, body: prior.response_body as LegacyBillingResponse['body'] };
}
