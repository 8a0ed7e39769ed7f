import { Type } from '@sinclair/typebox';
import { Id, IsoDateTime, Literals, NullableDateTime, Text } from '../../lib/schemas.js';

export const ContextParams = Type.Object(
  { context: Type.String({ minLength: 1, maxLength: 64, description: 'text_session:{id} or call_session:{id}' }) },
  { additionalProperties: false },
);

export const SessionOut = Type.Object({
  id: Id,
  session_context: Type.String(),
  kind: Literals(['text', 'call'] as const),
  modality: Literals(['text', 'voice', 'video'] as const),
  source: Literals(['APPOINTMENT', 'INSTANT'] as const),
  appointment_id: Type.Union([Id, Type.Null()]),
  patient_id: Id,
  doctor_id: Id,
  status: Type.String(),
  created_at: IsoDateTime,
  activated_at: NullableDateTime,
  connected_at: NullableDateTime,
  ended_at: NullableDateTime,
  end_reason: Type.Union([Type.String(), Type.Null()]),
  doctor_response_deadline: NullableDateTime,
  patient_in_call: Type.Boolean(),
  doctor_in_call: Type.Boolean(),
  credits_at_start: Type.Union([Type.Integer(), Type.Null()]),
  units_billed: Type.Integer(),
});

export const InstantBody = Type.Object(
  { doctor_id: Id, modality: Literals(['text', 'voice', 'video'] as const) },
  { additionalProperties: false },
);

export const EndBody = Type.Union([
  Type.Object({ reason: Type.Optional(Text({ maxLength: 200 })) }, { additionalProperties: false }),
  Type.Null(),
]);
