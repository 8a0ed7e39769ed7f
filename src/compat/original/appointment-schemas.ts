/**
 * Request and response schemas of the original app's appointment routes: ids as
 * the app sends them, dates and times in its patterns, and the answers it reads.
 */
import { Type } from '@sinclair/typebox';
import { IdParams } from '../../lib/schemas.js';
import { DATE_PATTERN, TIME_PATTERN } from './shapes.js';

const NullableInt = Type.Union([Type.Integer(), Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);

/** Path ids are strings in a URL; the app sends digits. */
export const DoctorParams = Type.Object({ id: IdParams.properties.id });

/** `doctor_id` as the app sends it (a number), or as a string of digits. */
export const LooseId = Type.Union([
  Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  Type.String({ pattern: '^[1-9][0-9]{0,15}$' }),
]);

export const BookBody = Type.Object(
  {
    doctor_id: LooseId,
    appointment_date: Type.String({ pattern: DATE_PATTERN, description: 'YYYY-MM-DD, the patient’s wall clock' }),
    appointment_time: Type.String({ pattern: TIME_PATTERN, description: 'HH:mm or HH:mm:ss' }),
    user_timezone: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, description: 'IANA zone; default: the patient’s profile zone' }),
    ),
    appointment_type: Type.Union([Type.Literal('text'), Type.Literal('voice'), Type.Literal('audio'), Type.Literal('video')]),
    reason: Type.Optional(Type.Union([Type.String({ maxLength: 500 }), Type.Null()])),
  },
  { description: 'Unknown fields are ignored (the app sends more than it needs).' },
);

export const DoctorStatusBody = Type.Object({
  status: Type.Union([Type.Literal('confirmed'), Type.Literal('cancelled'), Type.Literal('rejected'), Type.Literal(1), Type.Literal(2)]),
});

export const PatchBody = Type.Object({
  status: Type.Optional(Type.Union([Type.Integer(), Type.String({ maxLength: 32 })])),
  cancellation_reason: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  cancelled_by: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  appointment_date: Type.Optional(Type.String()),
  appointment_time: Type.Optional(Type.String()),
});

/** The converter sends `{"modality": "text"}`; older builds send nothing. */
export const StartBody = Type.Union([Type.Object({ modality: Type.Optional(Type.String({ maxLength: 16 })) }), Type.Null()]);

export const SlotsQuery = Type.Object({
  date: Type.String({ pattern: DATE_PATTERN, description: 'YYYY-MM-DD in the caller’s zone' }),
  user_timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
});

export const TimezoneHeaders = Type.Object({ 'x-user-timezone': Type.Optional(Type.String({ maxLength: 64 })) });

export const StartOut = Type.Object({
  success: Type.Literal(true),
  message: Type.String(),
  context_type: Type.Union([Type.Literal('text_session'), Type.Literal('call_session')]),
  context_id: Type.Integer(),
  session_id: Type.Integer(),
  session_context: Type.String(),
  appointment_id: Type.Integer(),
  data: Type.Object({
    appointment_id: Type.Integer(),
    session_id: Type.Integer(),
    session_context: Type.String(),
    appointment_type: Type.String(),
    session_status: Type.String(),
    status: Type.Integer(),
    call_unlocked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  }),
});

export const SessionPollOut = Type.Object({
  appointment_id: Type.Integer(),
  session_id: NullableInt,
  session_context: NullableString,
  status: Type.Integer({ description: 'The appointment’s numeric status' }),
  appointment_status: Type.String({ description: 'sessiongate’s status word' }),
  appointment_type: Type.String(),
  session_status: NullableString,
  doctor_response_deadline: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

export const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const;
export const DayHours = Type.Object({
  enabled: Type.Boolean(),
  slots: Type.Array(Type.Object({ start: Type.String(), end: Type.String() })),
});

export const AvailabilityOut = Type.Object({
  doctor_id: Type.Integer(),
  working_hours: Type.Object(Object.fromEntries(DAYS.map((d) => [d, DayHours])) as Record<(typeof DAYS)[number], typeof DayHours>),
  is_available_now: Type.Boolean(),
  is_online: Type.Boolean(),
});
