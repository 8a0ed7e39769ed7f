import { Type } from '@sinclair/typebox';
import { Id, IsoDateTime, Literals, NullableDateTime } from '../../lib/schemas.js';
import { DEDUCTION_REASONS } from './legacy.js';

const Currency = Literals(['MWK', 'USD'] as const);
const NullableId = Type.Union([Id, Type.Null()]);

export const SessionBillingOut = Type.Object({
  session_id: Id,
  session_context: Type.String(),
  status: Type.String(),
  modality: Literals(['text', 'voice', 'video'] as const),
  end_reason: Type.Union([Type.String(), Type.Null()]),
  billable_from: NullableDateTime,
  ended_at: NullableDateTime,
  credits_at_start: Type.Union([Type.Integer(), Type.Null()]),
  units_billed: Type.Integer({ minimum: 0 }),
  units_expected: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
    description: 'What the session costs in total, once it has ended',
  }),
  settled: Type.Boolean(),
  settled_at: NullableDateTime,
  entries: Type.Array(
    Type.Object({
      id: Id,
      unit_no: Type.Integer({ minimum: 1 }),
      modality: Type.String(),
      credits: Type.Integer(),
      reason: Type.String(),
      created_at: IsoDateTime,
      subscription_id: Type.Union([Id, Type.Null()], { description: 'Hidden from the doctor' }),
      doctor_amount_minor: Type.Union([Type.Integer(), Type.Null()], { description: 'Hidden from the patient' }),
      doctor_currency: Type.Union([Currency, Type.Null()]),
    }),
  ),
});

export const WalletQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^(100|[1-9][0-9]?)$', description: '1–100, default 50' })),
    before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'Ledger entry id: entries older than this (keyset)' })),
  },
  { additionalProperties: false },
);

export const WalletOut = Type.Object({
  doctor_id: Id,
  currency: Currency,
  balance_minor: Type.Integer(),
  balance: Type.String({ description: 'Decimal, two places' }),
  payout_per_unit: Type.Object({ currency: Currency, amount_minor: Type.Integer(), amount: Type.String() }),
  entries: Type.Array(
    Type.Object({
      id: Id,
      session_id: NullableId,
      session_context: Type.Union([Type.String(), Type.Null()]),
      appointment_id: NullableId,
      unit_no: Type.Integer(),
      modality: Type.String(),
      amount_minor: Type.Integer(),
      amount: Type.String(),
      currency: Currency,
      reason: Type.String(),
      created_at: IsoDateTime,
    }),
  ),
  next_before: NullableId,
});

/** end-session / process-payment take no body; old clients may send an empty object. */
export const EmptyBody = Type.Union([Type.Object({}, { additionalProperties: false }), Type.Null()]);

export const DeductionBody = Type.Object(
  {
    appointment_id: Id,
    sessions_to_deduct: Type.Integer({ minimum: 1, maximum: 100 }),
    reason: Literals(DEDUCTION_REASONS),
  },
  { additionalProperties: false },
);

export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7E]+$' })),
});

export const LegacyBillingOut = Type.Object({
  success: Type.Literal(true),
  message: Type.String(),
  data: Type.Object({
    appointment_id: Id,
    appointment_status: Type.String(),
    session_id: NullableId,
    session_context: Type.Union([Type.String(), Type.Null()]),
    billed_through: Literals(['session', 'appointment'] as const),
    already_processed: Type.Boolean(),
    units_charged: Type.Integer({ minimum: 0 }),
    units_total: Type.Integer({ minimum: 0 }),
    payment_processing: Type.Object({
      doctor_payment_success: Type.Boolean(),
      patient_deduction_success: Type.Boolean(),
      doctor_payment_amount: Type.Number(),
      doctor_payment_amount_minor: Type.Integer(),
      doctor_payment_currency: Currency,
      patient_sessions_deducted: Type.Integer(),
      errors: Type.Array(Type.String()),
    }),
    sessions_deducted: Type.Optional(Type.Integer()),
    sessions_requested: Type.Optional(Type.Integer()),
    remaining_sessions: Type.Optional(Type.Integer()),
    reason: Type.Optional(Type.String()),
  }),
});
