/**
 * Appointments (reference §1): list, book, details, the doctor's status changes, cancel,
 * start-session, the session poll, and the slot picker's two helpers. Each route maps the app's
 * request onto the appointments/sessions services and their answer onto the app's shapes.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Appointment, Executor, Session, User } from '../../db/types.js';
import { DomainError, forbidden, invalid, notFound } from '../../lib/errors.js';
import { IdParams, iso, problems, toId } from '../../lib/schemas.js';
import { currentUser, type AuthUser } from '../../plugins/auth.js';
import {
  bookAppointment,
  bookingLimitsOf,
  cancelAppointment,
  confirmAppointment,
  doctorBookedTimes,
  pageAppointments,
  pollAppointmentSession,
  readableAppointment,
  sessionContextOf,
} from '../../modules/appointments/service.js';
import { contextOf, doctorInLiveSession, sessionsByIds, startAppointmentSession } from '../../modules/sessions/service.js';
import { isValidTimezone, usersByIds } from '../../modules/users/service.js';
import {
  DATE_PATTERN,
  Envelope,
  PageQuery,
  Paginator,
  PersonOut,
  TIME_PATTERN,
  appStatus,
  hourMinute,
  original,
  originalErrorHandler,
  pageOf,
  paginator,
  person,
  safeZone,
  wallClock,
  zonedInstant,
} from './shapes.js';

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

async function itemOf(db: Executor, a: Appointment) {
  const { people, sessions } = await appointmentContext(db, [a]);
  return appointmentItem(a, people, a.session_id === null ? undefined : sessions.get(a.session_id));
}

// ---------------------------------------------------------------------------------------------
// Requests

/** Path ids are strings in a URL; the app sends digits. */
const DoctorParams = Type.Object({ id: IdParams.properties.id });

/** `doctor_id` as the app sends it (a number), or as a string of digits. */
const LooseId = Type.Union([
  Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  Type.String({ pattern: '^[1-9][0-9]{0,15}$' }),
]);

const BookBody = Type.Object(
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

const DoctorStatusBody = Type.Object({
  status: Type.Union([Type.Literal('confirmed'), Type.Literal('cancelled'), Type.Literal('rejected'), Type.Literal(1), Type.Literal(2)]),
});

const PatchBody = Type.Object({
  status: Type.Optional(Type.Union([Type.Integer(), Type.String({ maxLength: 32 })])),
  cancellation_reason: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  cancelled_by: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  appointment_date: Type.Optional(Type.String()),
  appointment_time: Type.Optional(Type.String()),
});

/** The converter sends `{"modality": "text"}`; older builds send nothing. */
const StartBody = Type.Union([Type.Object({ modality: Type.Optional(Type.String({ maxLength: 16 })) }), Type.Null()]);

const SlotsQuery = Type.Object({
  date: Type.String({ pattern: DATE_PATTERN, description: 'YYYY-MM-DD in the caller’s zone' }),
  user_timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
});

const TimezoneHeaders = Type.Object({ 'x-user-timezone': Type.Optional(Type.String({ maxLength: 64 })) });

const StartOut = Type.Object({
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

const SessionPollOut = Type.Object({
  appointment_id: Type.Integer(),
  session_id: NullableInt,
  session_context: NullableString,
  status: Type.Integer({ description: 'The appointment’s numeric status' }),
  appointment_status: Type.String({ description: 'sessiongate’s status word' }),
  appointment_type: Type.String(),
  session_status: NullableString,
  doctor_response_deadline: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const;
const DayHours = Type.Object({ enabled: Type.Boolean(), slots: Type.Array(Type.Object({ start: Type.String(), end: Type.String() })) });

const AvailabilityOut = Type.Object({
  doctor_id: Type.Integer(),
  working_hours: Type.Object(Object.fromEntries(DAYS.map((d) => [d, DayHours])) as Record<(typeof DAYS)[number], typeof DayHours>),
  is_available_now: Type.Boolean(),
  is_online: Type.Boolean(),
});

/** A time zone the caller named (validated), else their profile's. */
function callerZone(user: AuthUser, ...named: (string | undefined)[]): string {
  for (const tz of named) {
    if (tz === undefined || tz === '') continue;
    if (!isValidTimezone(tz)) throw invalid(`The time zone "${tz}" is not recognised.`, { user_timezone: tz });
    return tz;
  }
  return safeZone(user.timezone);
}

const cancelled = (req: FastifyRequest, id: number) => cancelAppointment(req.server.ctx.db, currentUser(req), id);

// ---------------------------------------------------------------------------------------------
// Routes

export default async function appointmentsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.setErrorHandler(originalErrorHandler);
  const { ctx } = app;
  const { db } = ctx;
  const anyone = app.auth();
  const one = { 200: Envelope(AppointmentItem), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT') };

  app.get(
    '/api/appointments',
    {
      preHandler: anyone,
      schema: {
        ...original(
          'The caller’s appointments (patient: booked; doctor: with them), latest first',
          'Laravel’s paginator; 50 per page by default (the app asks for no page and reads only the first).',
        ),
        querystring: PageQuery,
        response: { 200: Envelope(Paginator(AppointmentItem)), ...problems('UNAUTHENTICATED') },
      },
    },
    async (req) => {
      const page = pageOf(req.query, 50);
      const { rows, total } = await pageAppointments(db, currentUser(req), page);
      const { people, sessions } = await appointmentContext(db, rows);
      const items = rows.map((a) => appointmentItem(a, people, a.session_id === null ? undefined : sessions.get(a.session_id)));
      return { success: true as const, data: paginator('/api/appointments', items, page, total) };
    },
  );

  app.post(
    '/api/appointments',
    {
      // The core refuses non-patients with its own words ("Only patients book appointments").
      preHandler: anyone,
      config: { rateLimit: { max: ctx.config.rateLimitCreatePerMinute, timeWindow: '1 minute' } },
      schema: {
        ...original('Book an appointment (date + time in the patient’s zone)'),
        body: BookBody,
        response: {
          201: Envelope(AppointmentItem),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT', 'INSUFFICIENT_CREDITS'),
        },
      },
    },
    async (req, reply) => {
      const user = currentUser(req);
      const b = req.body;
      const zone = callerZone(user, b.user_timezone);
      const at = zonedInstant(b.appointment_date, b.appointment_time, zone);
      if (!at) {
        throw invalid(`${b.appointment_date} ${b.appointment_time} is not a time that exists in ${zone}. Please choose another time.`);
      }
      let a: Appointment;
      try {
        a = await bookAppointment(
          db,
          user,
          {
            doctor_id: Number(b.doctor_id),
            scheduled_at: at.toISOString(),
            appointment_type: b.appointment_type,
            reason: b.reason ?? undefined,
            patient_timezone: zone,
          },
          ctx.now(),
          bookingLimitsOf(ctx.config),
        );
      } catch (err) {
        // The core names its own field; the app's user chose a date and a time.
        if (err instanceof DomainError && err.code === 'VALIDATION_FAILED' && err.message.startsWith('scheduled_at')) {
          throw invalid('Please choose a date and time in the future.', err.details);
        }
        if (err instanceof DomainError && err.code === 'CONFLICT') {
          throw new DomainError('CONFLICT', 'This time slot is already booked. Please choose another time.', err.details);
        }
        throw err;
      }
      return reply.code(201).send({ success: true, message: 'Appointment booked successfully', data: await itemOf(db, a) });
    },
  );

  app.get(
    '/api/appointments/:id',
    {
      preHandler: anyone,
      schema: {
        ...original('One appointment, in the details screen’s shape'),
        params: IdParams,
        response: { 200: Envelope(AppointmentDetails), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => {
      const a = await readableAppointment(db, currentUser(req), toId(req.params.id));
      const { people, sessions } = await appointmentContext(db, [a]);
      return {
        success: true as const,
        data: appointmentDetails(a, people, a.session_id === null ? undefined : sessions.get(a.session_id)),
      };
    },
  );

  app.patch(
    '/api/doctor/appointments/:id/status',
    {
      preHandler: anyone,
      schema: {
        ...original('The doctor accepts (`confirmed`) or rejects (`cancelled`) a booking'),
        params: IdParams,
        body: DoctorStatusBody,
        response: one,
      },
    },
    async (req) => {
      if (currentUser(req).role !== 'doctor') throw forbidden('Only doctors can accept or reject bookings.');
      const id = toId(req.params.id);
      const confirm = req.body.status === 'confirmed' || req.body.status === 1;
      const a = confirm ? await confirmAppointment(db, currentUser(req), id) : await cancelled(req, id);
      return { success: true as const, message: confirm ? 'Appointment confirmed' : 'Appointment rejected', data: await itemOf(db, a) };
    },
  );

  app.patch(
    '/api/appointments/:id',
    {
      preHandler: anyone,
      schema: {
        ...original('Change an appointment: `status: 2` cancels it (`status: 1` confirms, for its doctor)'),
        params: IdParams,
        body: PatchBody,
        response: one,
      },
    },
    async (req) => {
      const id = toId(req.params.id);
      const status = req.body.status;
      if (status === 2 || status === '2' || status === 'cancelled') {
        return { success: true as const, message: 'Appointment cancelled', data: await itemOf(db, await cancelled(req, id)) };
      }
      if (status === 1 || status === '1' || status === 'confirmed') {
        const a = await confirmAppointment(db, currentUser(req), id);
        return { success: true as const, message: 'Appointment confirmed', data: await itemOf(db, a) };
      }
      if (status === undefined && (req.body.appointment_date !== undefined || req.body.appointment_time !== undefined)) {
        throw invalid('Appointments cannot be moved to another time. Please cancel this one and book a new appointment.');
      }
      throw invalid('This change cannot be made to an appointment. You can cancel it, or the doctor can confirm it.', {
        status: status ?? null,
      });
    },
  );

  app.delete(
    '/api/appointments/:id',
    {
      preHandler: anyone,
      schema: { ...original('Cancel an appointment (the doctor’s dashboard)'), params: IdParams, response: one },
    },
    async (req) => ({
      success: true as const,
      message: 'Appointment cancelled',
      data: await itemOf(db, await cancelled(req, toId(req.params.id))),
    }),
  );

  app.post(
    '/api/appointments/:id/start-session',
    {
      preHandler: anyone,
      schema: {
        ...original(
          'Give a confirmed appointment its session (from 15 minutes before its time; idempotent)',
          'The app reads top-level `context_type` + `context_id`, or `data.session_id`.',
        ),
        params: IdParams,
        headers: TimezoneHeaders,
        body: StartBody,
        response: {
          200: StartOut,
          201: StartOut,
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT', 'INSUFFICIENT_CREDITS'),
        },
      },
    },
    async (req, reply) => {
      const appointmentId = toId(req.params.id);
      const { session, created } = await startAppointmentSession(ctx, currentUser(req), appointmentId);
      const a = await readableAppointment(db, currentUser(req), appointmentId);
      const context = contextOf(session);
      return reply.code(created ? 201 : 200).send({
        success: true,
        message: created ? 'Session started' : 'Session already started',
        context_type: session.kind === 'text' ? 'text_session' : 'call_session',
        context_id: session.id,
        session_id: session.id,
        session_context: context,
        appointment_id: a.id,
        data: {
          appointment_id: a.id,
          session_id: session.id,
          session_context: context,
          appointment_type: a.appointment_type,
          session_status: session.status,
          status: appStatus(a.status),
          call_unlocked_at: session.kind === 'call' ? iso(session.created_at) : null,
        },
      });
    },
  );

  app.get(
    '/api/appointments/:id/session',
    {
      onRequest: app.authToken,
      schema: {
        ...original('The appointment’s session, if it has one (poll while waiting for it)'),
        params: IdParams,
        response: { 200: Envelope(SessionPollOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => {
      const { appointment: a, session: s } = await pollAppointmentSession(ctx.database, req.tokenSubject!, toId(req.params.id));
      return {
        success: true as const,
        data: {
          appointment_id: a.id!,
          session_id: s?.id ?? null,
          session_context: sessionContextOf(s),
          status: appStatus(a.status),
          appointment_status: a.status,
          appointment_type: a.appointment_type,
          session_status: s?.status ?? null,
          doctor_response_deadline: iso(s?.doctor_response_deadline),
        },
      };
    },
  );

  app.get(
    '/api/doctors/:id/booked-slots',
    {
      preHandler: anyone,
      schema: {
        ...original(
          'The doctor’s taken times on a date (`HH:MM` in the caller’s zone)',
          'The date is read in `user_timezone` (query), else the `X-User-Timezone` header, else the caller’s profile zone.',
        ),
        params: DoctorParams,
        querystring: SlotsQuery,
        headers: TimezoneHeaders,
        response: {
          200: Envelope(
            Type.Object({
              doctor_id: Type.Integer(),
              date: Type.String(),
              timezone: Type.String(),
              booked_times: Type.Array(Type.String()),
            }),
          ),
          ...problems('UNAUTHENTICATED', 'NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const zone = callerZone(currentUser(req), req.query.user_timezone, req.headers['x-user-timezone']);
      const { date } = req.query;
      const [y, m, d] = date.split('-').map(Number) as [number, number, number];
      const next = new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
      // A day whose midnight a daylight-saving change skips starts at 01:00.
      const from = zonedInstant(date, '00:00', zone) ?? zonedInstant(date, '01:00', zone);
      const to = zonedInstant(next, '00:00', zone) ?? zonedInstant(next, '01:00', zone);
      if (!from || !to) throw invalid(`${date} is not a valid date. Please choose another date.`);
      const times = await doctorBookedTimes(db, toId(req.params.id), from, to);
      return {
        success: true as const,
        data: { doctor_id: toId(req.params.id), date, timezone: zone, booked_times: times.map((t) => hourMinute(t, zone)) },
      };
    },
  );

  app.get(
    '/api/doctors/:id/availability',
    {
      preHandler: anyone,
      schema: {
        ...original(
          'When the doctor can be booked, and whether they are free now',
          'sessiongate keeps no working hours: every day is open (any future time can be booked; taken times are in booked-slots). ' +
            '`is_available_now` is false while the doctor is in a live session.',
        ),
        params: DoctorParams,
        response: { 200: Envelope(AvailabilityOut), ...problems('UNAUTHENTICATED', 'NOT_FOUND') },
      },
    },
    async (req) => {
      const id = toId(req.params.id);
      const [doctor] = await usersByIds(db, [id]);
      if (!doctor || doctor.role !== 'doctor') throw notFound('Doctor', { doctor_id: id });
      const busy = await doctorInLiveSession(db, id);
      const allDay = { enabled: true, slots: [{ start: '00:00', end: '23:59' }] };
      return {
        success: true as const,
        data: {
          doctor_id: id,
          working_hours: Object.fromEntries(DAYS.map((d) => [d, allDay])) as Record<(typeof DAYS)[number], typeof allDay>,
          is_available_now: !busy,
          is_online: !busy,
        },
      };
    },
  );
}
