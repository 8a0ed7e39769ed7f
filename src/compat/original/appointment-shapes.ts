/**
 * The appointment in the shapes the original app reads: the list item with the
 * aliases the app also tries, and the details screen's flat object, with wall-clock dates and
 * times in the booking's zone. Pure mapping from the core's rows.
 */
import { Type } from '@sinclair/typebox';
import type { Appointment, Executor, Session, User } from '../../db/types.js';
import { iso } from '../../lib/schemas.js';
import { contextOf, sessionsByIds } from '../../modules/sessions/service.js';
import { usersByIds } from '../../modules/users/service.js';
import { PersonOut, appStatus, person, safeZone, wallClock } from './shapes.js';

// ---------------------------------------------------------------------------------------------
// Shapes

const NullableInt = Type.Union([Type.Integer(), Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);

/** A list item (`AppointmentController@index`), with the aliases the app also tries. */
export const AppointmentItem = Type.Object({
  id: Type.Integer(),
  patient_id: Type.Integer(),
  doctor_id: Type.Integer(),
  appointment_date: Type.String({ description: 'YYYY-MM-DD in user_timezone (the patient’s booking zone)' }),
  appointment_time: Type.String({ description: 'HH:mm:ss in user_timezone' }),
  appointment_datetime_utc: Type.String({ format: 'date-time' }),
  user_timezone: Type.String(),
  date: Type.String(),
  time: Type.String(),
  appointment_type: Type.String(),
  duration_minutes: Type.Integer(),
  status: Type.Integer({ description: '0 pending, 1 confirmed, 2 cancelled/expired/missed, 3 completed, 7 in progress' }),
  status_name: Type.String({ description: 'sessiongate’s status word' }),
  reason: NullableString,
  session_id: Type.Union([Type.Integer(), Type.Null()], {
    description: 'The appointment’s text session (null before it starts, and for calls)',
  }),
  sessionId: NullableInt,
  session_context: NullableString,
  call_unlocked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
  doctorName: Type.String(),
  patientName: Type.String(),
  doctor_name: Type.String(),
  patient_name: Type.String(),
  doctor: PersonOut,
  patient: PersonOut,
});

/** The details screen's flat object (`AppointmentController@show`): other names than the list. */
export const AppointmentDetails = Type.Object({
  ...AppointmentItem.properties,
  consultation_type: Type.String(),
  notes: Type.Null(),
  actual_start_time: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  actual_end_time: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  sessions_deducted: Type.Integer({ description: 'Units charged for the appointment’s session' }),
  completed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

type People = Map<number, User>;

/** Loads the parties and sessions a batch of appointments names (three reads, whatever the batch size). */
export async function appointmentContext(db: Executor, rows: readonly Appointment[]) {
  const [users, sessions] = await Promise.all([
    usersByIds(
      db,
      rows.flatMap((a) => [a.patient_id, a.doctor_id]),
    ),
    sessionsByIds(
      db,
      rows.flatMap((a) => (a.session_id === null ? [] : [a.session_id])),
    ),
  ]);
  return { people: new Map(users.map((u) => [u.id, u])) as People, sessions: new Map(sessions.map((s) => [s.id, s])) };
}

/** The zone an appointment's wall-clock date and time are given in: the patient's booking zone. */
export function appointmentZone(a: Appointment, people: People): string {
  return safeZone(a.patient_timezone ?? people.get(a.patient_id)?.timezone);
}

/** List item of one appointment (`session` is its linked session, if any). */
export function appointmentItem(a: Appointment, people: People, session: Session | undefined) {
  const zone = appointmentZone(a, people);
  const wall = wallClock(a.scheduled_at, zone);
  const doctor = person(people.get(a.doctor_id), a.doctor_id);
  const patient = person(people.get(a.patient_id), a.patient_id);
  // `session_id` names the appointment's *text* session: the app opens `text_session_{id}` with it.
  // A call appointment's session is reached through `/chat/{appointment id}`; for it the app reads
  // `call_unlocked_at` instead, which is when its call session was created (from 15 minutes
  // before the slot by start-session, or at the slot by auto-start).
  const textSessionId = session && session.kind === 'text' ? session.id : null;
  return {
    id: a.id,
    patient_id: a.patient_id,
    doctor_id: a.doctor_id,
    appointment_date: wall.date,
    appointment_time: wall.time,
    appointment_datetime_utc: iso(a.scheduled_at)!,
    user_timezone: zone,
    date: wall.date,
    time: wall.time,
    appointment_type: a.appointment_type,
    duration_minutes: a.duration_minutes,
    status: appStatus(a.status),
    status_name: a.status,
    reason: a.reason,
    session_id: textSessionId,
    sessionId: textSessionId,
    session_context: session ? contextOf(session) : null,
    call_unlocked_at: session && session.kind === 'call' ? iso(session.created_at) : null,
    created_at: iso(a.created_at)!,
    updated_at: iso(a.updated_at)!,
    doctorName: doctor.display_name,
    patientName: patient.display_name,
    doctor_name: doctor.display_name,
    patient_name: patient.display_name,
    doctor,
    patient,
  };
}

export function appointmentDetails(a: Appointment, people: People, session: Session | undefined) {
  const item = appointmentItem(a, people, session);
  const started = session ? (session.activated_at ?? session.connected_at) : null;
  return {
    ...item,
    consultation_type: a.appointment_type,
    notes: null,
    actual_start_time: iso(started),
    actual_end_time: iso(session?.ended_at),
    sessions_deducted: session?.units_billed ?? 0,
    completed_at: a.status === 'completed' ? iso(session?.ended_at ?? a.updated_at) : null,
  };
}

/** The list item of one appointment, its parties and session loaded. */
export async function itemOf(db: Executor, a: Appointment) {
  const { people, sessions } = await appointmentContext(db, [a]);
  return appointmentItem(a, people, a.session_id === null ? undefined : sessions.get(a.session_id));
}

// ---------------------------------------------------------------------------------------------
// Requests
