/**
 * The call in the shapes the original app reads: its states, the key it names
 * a call by, the request bodies of the call routes and their answers. Pure mapping.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { Session } from '../../db/types.js';
import { Id, iso } from '../../lib/schemas.js';
import { contextOf } from '../../modules/sessions/service.js';

/** The app's call states. */
export type AppCallStatus = 'connecting' | 'active' | 'ended';

export function appCallStatus(status: Session['status']): AppCallStatus {
  switch (status) {
    case 'waiting':
    case 'ringing':
      return 'connecting';
    case 'connected':
      return 'active';
    default:
      return 'ended';
  }
}

/** The id the app names a call by: its routing key, or the appointment id, always a string. */
export const callKeyOf = (s: Pick<Session, 'routing_key' | 'appointment_id' | 'id' | 'kind'>): string =>
  s.routing_key ?? (s.appointment_id !== null ? String(s.appointment_id) : contextOf(s));

// ---- schemas ----------------------------------------------------------------------------------

export const CallKey = Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Id], {
  description: 'direct_session_<ms> (instant call), an appointment id (as a string), or call_session:{id}',
});
export const CallType = Type.Union([Type.Literal('voice'), Type.Literal('audio'), Type.Literal('video')]);
// The app sends fields nobody reads (caller_id, action, reason, declined_by, session_duration,
// was_connected, triggered_by): unknown fields are accepted and ignored.
export const loose = { additionalProperties: true, maxProperties: 32 } as const;

export const StartBody = Type.Object(
  {
    call_type: CallType,
    appointment_id: CallKey,
    doctor_id: Type.Optional(Type.Union([Id, Type.String({ pattern: '^[1-9][0-9]{0,15}$' })])),
    reason: Type.Optional(Type.Union([Type.String({ maxLength: 2000 }), Type.Null()])),
  },
  loose,
);
export const KeyBody = Type.Object({ appointment_id: CallKey }, loose);
export const KeyParams = Type.Object({ key: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
export const EndBody = Type.Union([Type.Object({}, loose), Type.Null()]);

export const NullableIso = Type.Union([Type.String(), Type.Null()]);
export const CallData = Type.Object({
  id: Id,
  session_id: Id,
  call_session_id: Id,
  session_context: Type.String(),
  appointment_id: Type.String({ description: 'The key the app names the call by, always a string' }),
  call_type: Type.String(),
  status: Type.String({ description: 'connecting | active | ended' }),
  session_status: Type.String({ description: "The core's call state (waiting, ringing, connected, ended, missed, expired)" }),
  patient_id: Id,
  doctor_id: Id,
  is_connected: Type.Boolean(),
  started_at: Type.String(),
  connected_at: NullableIso,
  ended_at: NullableIso,
  end_reason: Type.Union([Type.String(), Type.Null()]),
});
export type CallData = Static<typeof CallData>;

export const Message = Type.String();
export const StartOut = Type.Object({
  success: Type.Literal(true),
  message: Message,
  data: CallData,
  appointment_id: Type.String(),
  call_type: Type.String(),
  remaining_calls: Type.Integer(),
});
export const ActionOut = Type.Object({ success: Type.Literal(true), message: Message, data: CallData });
export const EndOut = Type.Object({
  success: Type.Literal(true),
  message: Message,
  data: Type.Composite([
    CallData,
    Type.Object({
      was_connected: Type.Boolean({ description: 'By the server: the call was connected' }),
      duration_seconds: Type.Integer({ description: 'By the server: connected time' }),
      units_billed: Type.Integer(),
    }),
  ]),
});
export const DeductionOut = Type.Object({
  success: Type.Literal(true),
  message: Message,
  data: Type.Composite([
    CallData,
    Type.Object({
      deductions_processed: Type.Integer({ description: 'Units this request found due and charged (0 when the server already had)' }),
      total_deductions: Type.Integer({ description: 'Units charged for the call so far' }),
      remaining_calls: Type.Integer(),
    }),
  ]),
});
export const StatusOut = Type.Object({ success: Type.Literal(true), data: Type.Union([CallData, Type.Null()]) });

export function callData(s: Session): CallData {
  return {
    id: s.id,
    session_id: s.id,
    call_session_id: s.id,
    session_context: contextOf(s),
    appointment_id: callKeyOf(s),
    call_type: s.modality,
    status: appCallStatus(s.status),
    session_status: s.status,
    patient_id: s.patient_id,
    doctor_id: s.doctor_id,
    is_connected: s.status === 'connected',
    started_at: iso(s.created_at)!,
    connected_at: iso(s.connected_at),
    ended_at: iso(s.ended_at),
    end_reason: s.end_reason,
  };
}
