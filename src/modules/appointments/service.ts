/**
 * Appointments: booking, confirmation, cancellation, look-ups. Status changes are conditional
 * updates (`where status in (...)`), so two concurrent requests cannot both win; the doctor's
 * slot is a partial unique index, so double booking is refused by the database.
 */
import { sql } from 'kysely';
import { runPrepared, type Database, type PreparedStatement } from '../../db/index.js';
import {
  LIVE_APPOINTMENT_STATUSES,
  type Appointment,
  type AppointmentStatus,
  type Db,
  type Executor,
  type Session,
} from '../../db/types.js';
import { DomainError, conflict, invalid, isUniqueViolation, notFound } from '../../lib/errors.js';
import { assertCanRead, assertParticipant, type Actor } from '../access.js';
import { usableCredits } from '../users/credits.js';
import { formatSessionContext } from '../session-context.js';
import { isValidTimezone } from '../users/service.js';
import { modalityForAppointmentType } from './modality.js';

export const BOOKABLE_TYPES = ['text', 'audio', 'voice', 'video'] as const;
export const FINAL_STATUSES: AppointmentStatus[] = ['completed', 'missed', 'expired', 'cancelled'];

export async function getAppointment(db: Executor, id: number): Promise<Appointment | undefined> {
  return db.selectFrom('appointments').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function getAppointmentOrThrow(db: Executor, id: number): Promise<Appointment> {
  const a = await getAppointment(db, id);
  if (!a) throw notFound('Appointment', { appointment_id: id });
  return a;
}

/** Loads an appointment the actor may read (participant or admin), else 404/403. */
export async function readableAppointment(db: Executor, actor: Actor, id: number): Promise<Appointment> {
  const a = await getAppointmentOrThrow(db, id);
  assertCanRead(actor, a);
  return a;
}

const MIN_YEAR = 1900;
const MAX_YEAR = 9999;

function parseInstant(value: string, field: string): Date {
  // Offsets are required: a time without a zone is how the original system mis-scheduled.
  if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(value)) throw invalid(`${field} must include a UTC offset (e.g. Z or +02:00)`);
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw invalid(`${field} is not a valid date-time`);
  // Every time we store is written back as RFC 3339, whose year has four digits (UTC).
  if (d.getUTCFullYear() < MIN_YEAR || d.getUTCFullYear() > MAX_YEAR) {
    throw invalid(`${field} must be between ${MIN_YEAR} and ${MAX_YEAR} (UTC)`, { [field]: value });
  }
  return d;
}

async function assertDoctor(db: Executor, doctorId: number): Promise<void> {
  const doctor = await db.selectFrom('users').select(['id', 'role', 'deactivated_at']).where('id', '=', doctorId).executeTakeFirst();
  if (!doctor || doctor.role !== 'doctor' || doctor.deactivated_at !== null) throw notFound('Doctor', { doctor_id: doctorId });
}

async function insertAppointment(db: Executor, values: Parameters<typeof baseInsert>[1]): Promise<Appointment> {
  try {
    return await baseInsert(db, values);
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw conflict('The doctor already has an appointment at that time', {
        doctor_id: values.doctor_id,
        scheduled_at: new Date(values.scheduled_at).toISOString(),
      });
    }
    throw err;
  }
}

function baseInsert(
  db: Executor,
  values: {
    patient_id: number;
    doctor_id: number;
    appointment_type: string;
    scheduled_at: Date;
    status?: AppointmentStatus;
    reason?: string | null;
    duration_minutes?: number;
    patient_timezone?: string | null;
  },
) {
  return db.insertInto('appointments').values(values).returningAll().executeTakeFirstOrThrow();
}

export interface BookInput {
  doctor_id: number;
  scheduled_at: string;
  appointment_type: (typeof BOOKABLE_TYPES)[number];
  reason?: string;
  duration_minutes?: number;
  /** The zone the patient booked in (kept for display); default: the patient's profile zone. */
  patient_timezone?: string;
}

/** What a patient may hold (no squatting a doctor's calendar). */
export interface BookingLimits {
  /** Future pending bookings a patient may hold at once (`MAX_PENDING_BOOKINGS`). */
  maxPendingBookings: number;
  /** How far ahead a booking may be made (`BOOKING_MAX_DAYS_AHEAD`). */
  maxDaysAhead: number;
}

/** The booking limits of the configuration (`MAX_PENDING_BOOKINGS`, `BOOKING_MAX_DAYS_AHEAD`). */
export const bookingLimitsOf = (config: { maxPendingBookings: number; bookingMaxDaysAhead: number }): BookingLimits => ({
  maxPendingBookings: config.maxPendingBookings,
  maxDaysAhead: config.bookingMaxDaysAhead,
});

/**
 * A patient books a doctor. Every door that books comes here, so the rules hold for all of them:
 * a future time within `maxDaysAhead`, an active doctor, a usable credit of the booked modality,
 * and at most `maxPendingBookings` future pending bookings. The patient's row is locked for the
 * count and the insert, so concurrent bookings of one patient cannot both pass the count.
 */
export async function bookAppointment(db: Db, patient: Actor & { timezone: string }, input: BookInput, now: Date, limits: BookingLimits) {
  if (patient.role !== 'patient') throw new DomainError('FORBIDDEN', 'Only patients book appointments');
  const at = parseInstant(input.scheduled_at, 'scheduled_at');
  if (at.getTime() <= now.getTime()) throw invalid('scheduled_at must be in the future');
  if (input.patient_timezone !== undefined && !isValidTimezone(input.patient_timezone)) {
    throw invalid(`"${input.patient_timezone}" is not an IANA time zone`);
  }
  if (at.getTime() > now.getTime() + limits.maxDaysAhead * 86_400_000) {
    throw invalid(`scheduled_at must be within ${limits.maxDaysAhead} days`, { max_days_ahead: limits.maxDaysAhead });
  }
  const modality = modalityForAppointmentType(input.appointment_type);
  if (!modality) throw invalid(`appointment_type must be one of ${BOOKABLE_TYPES.join(', ')}`);
  await assertDoctor(db, input.doctor_id);
  return db.transaction().execute(async (trx) => {
    // FOR NO KEY UPDATE: serialises this patient's bookings without blocking the FOR KEY SHARE
    // that inserting rows referencing the patient takes.
    await trx.selectFrom('users').select('id').where('id', '=', patient.id).forNoKeyUpdate().executeTakeFirst();
    const { n } = await trx
      .selectFrom('appointments')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('patient_id', '=', patient.id)
      .where('status', '=', 'pending')
      .where('scheduled_at', '>', sql<Date>`now()`)
      .executeTakeFirstOrThrow();
    if (Number(n) >= limits.maxPendingBookings) {
      throw conflict(`You already hold ${limits.maxPendingBookings} pending bookings; wait for a confirmation or cancel one`, {
        max_pending_bookings: limits.maxPendingBookings,
      });
    }
    if ((await usableCredits(trx, patient.id, modality)) < 1) {
      throw new DomainError('INSUFFICIENT_CREDITS', `Booking a ${modality} consultation needs a ${modality} credit`, { modality });
    }
    return insertAppointment(trx, {
      patient_id: patient.id,
      doctor_id: input.doctor_id,
      appointment_type: input.appointment_type,
      scheduled_at: at,
      reason: input.reason ?? null,
      duration_minutes: input.duration_minutes,
      patient_timezone: input.patient_timezone ?? patient.timezone,
    });
  });
}

export interface ImportInput {
  patient_id: number;
  doctor_id: number;
  scheduled_at: string;
  appointment_type: string;
  status?: AppointmentStatus;
  reason?: string;
  duration_minutes?: number;
}

/** Admin import: any status and time (legacy data, demos, tests). Parties are still checked. */
export async function importAppointment(db: Db, input: ImportInput) {
  const at = parseInstant(input.scheduled_at, 'scheduled_at');
  const patient = await db.selectFrom('users').select(['role', 'timezone']).where('id', '=', input.patient_id).executeTakeFirst();
  if (!patient || patient.role !== 'patient') throw notFound('Patient', { patient_id: input.patient_id });
  await assertDoctor(db, input.doctor_id);
  return insertAppointment(db, {
    patient_id: input.patient_id,
    doctor_id: input.doctor_id,
    appointment_type: input.appointment_type,
    scheduled_at: at,
    status: input.status ?? 'pending',
    reason: input.reason ?? null,
    duration_minutes: input.duration_minutes,
    patient_timezone: patient.timezone,
  });
}

/** pending → confirmed, by the appointment's doctor, before its time. */
export async function confirmAppointment(db: Db, actor: Actor, id: number): Promise<Appointment> {
  const a = await getAppointmentOrThrow(db, id);
  if (assertParticipant(actor, a) !== 'doctor') throw new DomainError('FORBIDDEN', "Only the appointment's doctor confirms it");
  const updated = await db
    .updateTable('appointments')
    .set({ status: 'confirmed' })
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .where('scheduled_at', '>', sql<Date>`now()`)
    .returningAll()
    .executeTakeFirst();
  if (updated) return updated;
  const now = await getAppointmentOrThrow(db, id);
  if (now.status === 'confirmed') return now; // idempotent
  throw conflict(
    now.status === 'pending'
      ? 'The appointment time has passed; it can no longer be confirmed'
      : `Cannot confirm a ${now.status} appointment`,
    { appointment_id: id, appointment_status: now.status },
  );
}

/** Any non-final → cancelled, by either participant. A started session is ended, not cancelled. */
export async function cancelAppointment(db: Db, actor: Actor, id: number): Promise<Appointment> {
  const a = await getAppointmentOrThrow(db, id);
  assertParticipant(actor, a);
  const updated = await db
    .updateTable('appointments')
    .set({ status: 'cancelled' })
    .where('id', '=', id)
    .where((eb) =>
      eb.or([eb('status', 'in', ['pending', 'confirmed']), eb.and([eb('status', '=', 'in_progress'), eb('session_id', 'is', null)])]),
    )
    .returningAll()
    .executeTakeFirst();
  if (updated) return updated;
  const now = await getAppointmentOrThrow(db, id);
  if (now.status === 'cancelled') return now;
  if (now.session_id !== null && now.status === 'in_progress') {
    throw conflict('The consultation has started; end the session instead', {
      appointment_id: id,
      session_id: now.session_id,
    });
  }
  throw conflict(`Cannot cancel a ${now.status} appointment`, { appointment_id: id, appointment_status: now.status });
}

export interface ListInput {
  status?: AppointmentStatus;
  before?: number;
  limit: number;
}

export async function listAppointments(db: Executor, actor: Actor, input: ListInput): Promise<Appointment[]> {
  let q = db.selectFrom('appointments').selectAll().orderBy('id', 'desc').limit(input.limit);
  if (actor.role === 'patient') q = q.where('patient_id', '=', actor.id);
  if (actor.role === 'doctor') q = q.where('doctor_id', '=', actor.id);
  if (input.status) q = q.where('status', '=', input.status);
  if (input.before) q = q.where('id', '<', input.before);
  return q.execute();
}

export interface PageInput {
  page: number;
  perPage: number;
  statuses?: readonly AppointmentStatus[];
  /** By appointment time: `desc` (latest first, the default) or `asc` (soonest first). */
  order?: 'asc' | 'desc';
}

/**
 * A numbered page of the actor's appointments (a patient's or a doctor's own; an admin's: all)
 * by appointment time, with the total count — for clients that page by number.
 */
export async function pageAppointments(db: Executor, actor: Actor, input: PageInput): Promise<{ rows: Appointment[]; total: number }> {
  let base = db.selectFrom('appointments');
  if (actor.role === 'patient') base = base.where('patient_id', '=', actor.id);
  if (actor.role === 'doctor') base = base.where('doctor_id', '=', actor.id);
  if (input.statuses) base = input.statuses.length ? base.where('status', 'in', input.statuses) : base.where(sql<boolean>`false`);
  const order = input.order ?? 'desc';
  const [rows, count] = await Promise.all([
    base
      .selectAll()
      .orderBy('scheduled_at', order)
      .orderBy('id', order)
      .limit(input.perPage)
      .offset((input.page - 1) * input.perPage)
      .execute(),
    base.select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow(),
  ]);
  return { rows, total: count.n };
}

/**
 * The times a doctor is taken in `[from, to)`: live appointments (the statuses of the
 * doctor-slot unique index), so a slot shown free is one booking can take.
 */
export async function doctorBookedTimes(db: Executor, doctorId: number, from: Date, to: Date): Promise<Date[]> {
  const rows = await db
    .selectFrom('appointments')
    .select('scheduled_at')
    .where('doctor_id', '=', doctorId)
    .where('status', 'in', [...LIVE_APPOINTMENT_STATUSES])
    .where('scheduled_at', '>=', from)
    .where('scheduled_at', '<', to)
    .orderBy('scheduled_at')
    .execute();
  return rows.map((r) => r.scheduled_at);
}

/** What the session poll answers with. */
export interface PolledAppointment {
  appointment: Pick<Appointment, 'id' | 'patient_id' | 'doctor_id' | 'status' | 'appointment_type' | 'scheduled_at' | 'session_id'>;
  session: Pick<Session, 'id' | 'kind' | 'status' | 'doctor_response_deadline'> | null;
}

interface PollRow {
  id: number;
  patient_id: number;
  doctor_id: number;
  status: AppointmentStatus;
  appointment_type: string;
  scheduled_at: Date;
  session_id: number | null;
  session_kind: Session['kind'] | null;
  session_status: Session['status'] | null;
  session_deadline: Date | null;
}

// $1 the appointment id.
const POLL: PreparedStatement = {
  name: 'appointment_session_poll_v3',
  text: `
    select a.id, a.patient_id, a.doctor_id, a.status, a.appointment_type, a.scheduled_at, a.session_id,
           s.kind as session_kind, s.status as session_status, s.doctor_response_deadline as session_deadline
      from appointments a
      left join sessions s on s.id = a.session_id
     where a.id = $1::bigint`,
};

/**
 * `GET /api/v2/appointments/{id}/session` — what clients poll while chat answers SESSION_NOT_READY,
 * the most frequent request of all: the appointment and its session in one prepared statement.
 * 404 / 403 as for any appointment read.
 */
export async function pollAppointmentSession(
  database: Pick<Database, 'kind' | 'pool' | 'db'>,
  actor: Actor,
  id: number,
): Promise<PolledAppointment> {
  const [row] = await runPrepared<PollRow>(database, POLL, [id]);
  if (!row) throw notFound('Appointment', { appointment_id: id });
  assertCanRead(actor, row);
  const session =
    row.session_id !== null && row.session_kind !== null && row.session_status !== null
      ? { id: row.session_id, kind: row.session_kind, status: row.session_status, doctor_response_deadline: row.session_deadline }
      : null;
  return { appointment: row, session };
}

export function sessionContextOf(s: Pick<Session, 'kind' | 'id'> | null): string | null {
  return s ? formatSessionContext(s.kind, s.id) : null;
}
