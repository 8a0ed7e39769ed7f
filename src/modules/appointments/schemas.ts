import { Type } from '@sinclair/typebox';
import { Id, IsoDateTime, Literals, NullableDateTime, Text, MultilineText } from '../../lib/schemas.js';

export const AppointmentStatusSchema = Literals([
  'pending',
  'confirmed',
  'in_progress',
  'completed',
  'missed',
  'expired',
  'cancelled',
] as const);

export const BookableType = Type.Union([Type.Literal('text'), Type.Literal('audio'), Type.Literal('voice'), Type.Literal('video')]);

export const AppointmentOut = Type.Object({
  id: Id,
  patient_id: Id,
  doctor_id: Id,
  appointment_type: Type.String(),
  scheduled_at: IsoDateTime,
  duration_minutes: Type.Integer(),
  status: Type.String(),
  session_id: Type.Union([Id, Type.Null()]),
  session_context: Type.Union([Type.String(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
  patient_timezone: Type.Union([Type.String(), Type.Null()]),
  created_at: IsoDateTime,
  updated_at: IsoDateTime,
});

export const BookBody = Type.Object(
  {
    doctor_id: Id,
    scheduled_at: Type.String({ format: 'date-time', description: 'ISO-8601 with an offset; must be in the future' }),
    appointment_type: BookableType,
    reason: Type.Optional(MultilineText({ maxLength: 2000 })),
    duration_minutes: Type.Optional(Type.Integer({ minimum: 5, maximum: 480 })),
  },
  { additionalProperties: false },
);

export const ImportBody = Type.Object(
  {
    patient_id: Id,
    doctor_id: Id,
    scheduled_at: Type.String({ format: 'date-time' }),
    appointment_type: Text({ minLength: 1, maxLength: 32 }),
    status: Type.Optional(AppointmentStatusSchema),
    reason: Type.Optional(MultilineText({ maxLength: 2000 })),
    duration_minutes: Type.Optional(Type.Integer({ minimum: 5, maximum: 480 })),
  },
  { additionalProperties: false },
);

export const ListQuery = Type.Object(
  {
    status: Type.Optional(AppointmentStatusSchema),
    before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$' })),
    limit: Type.Optional(Type.String({ pattern: '^(100|[1-9][0-9]?)$' })),
  },
  { additionalProperties: false },
);

export const AppointmentSessionOut = Type.Object({
  appointment_id: Id,
  session_id: Type.Union([Id, Type.Null()]),
  session_context: Type.Union([Type.String(), Type.Null()]),
  session_status: Type.Union([Type.String(), Type.Null()]),
  appointment_status: Type.String(),
  status: Type.String({ description: 'Same as appointment_status (the field existing clients read)' }),
  appointment_type: Type.String(),
  scheduled_at: IsoDateTime,
  doctor_response_deadline: NullableDateTime,
});
