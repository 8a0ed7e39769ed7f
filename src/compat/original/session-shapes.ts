/**
 * The text session in the shape the original app's text-session and chat screens read,
 * built from the core's rows and read models. Pure mapping: no rule is decided here.
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../context.js';
import type { Session } from '../../db/types.js';
import { iso } from '../../lib/schemas.js';
import { accessOf, type Actor } from '../../modules/access.js';
import { sessionAllowance } from '../../modules/billing/views.js';
import { contextOf } from '../../modules/sessions/service.js';
import { isLive } from '../../modules/sessions/state.js';
import { getUser } from '../../modules/users/service.js';
import { ChatPerson, chatPerson } from './shapes.js';

const NullableString = Type.Union([Type.String(), Type.Null()]);

/** A text session with every field the app reads. */
export const TextSession = Type.Object(
  {
    id: Type.Integer(),
    session_id: Type.Integer(),
    session_context: Type.String(),
    chat_room_id: Type.String(),
    appointment_id: Type.Union([Type.Integer(), Type.Null()]),
    status: Type.String(),
    isActive: Type.Boolean(),
    started_at: Type.String(),
    activated_at: NullableString,
    ended_at: NullableString,
    last_activity_at: NullableString,
    doctor_response_deadline: NullableString,
    has_doctor_response: Type.Boolean(),
    has_patient_messages: Type.Boolean(),
    remaining_time_minutes: Type.Integer(),
    remaining_sessions: Type.Integer(),
    elapsed_minutes: Type.Integer(),
    sessions_used: Type.Integer(),
    sessions_remaining_before_start: Type.Union([Type.Integer(), Type.Null()]),
    reason: Type.Null(),
    patient_id: Type.Integer(),
    doctor_id: Type.Integer(),
    patient: ChatPerson,
    doctor: ChatPerson,
    patient_name: Type.String(),
    doctor_name: Type.String(),
    other_participant_name: Type.String(),
    other_participant_profile_picture_url: Type.Null(),
  },
  { additionalProperties: true },
);

/** The app's text-session object for `viewer`. */
export async function textSessionJson(ctx: AppContext, s: Session, viewer: Actor) {
  const [patient, doctor, allowance] = await Promise.all([
    getUser(ctx.db, s.patient_id),
    getUser(ctx.db, s.doctor_id),
    sessionAllowance(ctx, s),
  ]);
  const p = chatPerson(patient);
  const d = chatPerson(doctor);
  const other = accessOf(viewer, s) === 'doctor' ? p : d;
  return {
    id: s.id,
    session_id: s.id,
    session_context: contextOf(s),
    chat_room_id: `text_session_${s.id}`,
    appointment_id: s.appointment_id,
    status: s.status,
    isActive: isLive(s.status),
    started_at: s.created_at.toISOString(),
    activated_at: iso(s.activated_at),
    ended_at: iso(s.ended_at),
    last_activity_at: iso(s.updated_at),
    doctor_response_deadline: iso(s.doctor_response_deadline),
    has_doctor_response: s.activated_at !== null,
    has_patient_messages: s.patient_first_message_at !== null,
    remaining_time_minutes: allowance.remaining_minutes,
    remaining_sessions: allowance.credits,
    elapsed_minutes: allowance.elapsed_minutes,
    sessions_used: allowance.units_billed,
    sessions_remaining_before_start: s.credits_at_start,
    reason: null,
    patient_id: s.patient_id,
    doctor_id: s.doctor_id,
    patient: p,
    doctor: d,
    patient_name: patient?.name ?? '',
    doctor_name: d.display_name,
    other_participant_name: other.display_name,
    other_participant_profile_picture_url: null,
  };
}
