/**
 * Appointments: list, book, details, the doctor's status changes, cancel,
 * start-session, the session poll, and the slot picker's two helpers. Each route maps the app's
 * request onto the appointments/sessions services and their answer onto the app's shapes.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Appointment } from '../../db/types.js';
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
import { contextOf, doctorInLiveSession, startAppointmentSession } from '../../modules/sessions/service.js';
import { isValidTimezone, usersByIds } from '../../modules/users/service.js';
import {
  Envelope,
  PageQuery,
  Paginator,
  appStatus,
  hourMinute,
  original,
  originalErrorHandler,
  pageOf,
  paginator,
  safeZone,
  zonedInstant,
} from './shapes.js';
import { AppointmentDetails, AppointmentItem, appointmentContext, appointmentDetails, appointmentItem } from './appointment-shapes.js';
import {
  DoctorParams,
  BookBody,
  DoctorStatusBody,
  PatchBody,
  StartBody,
  SlotsQuery,
  TimezoneHeaders,
  StartOut,
  SessionPollOut,
  DAYS,
  AvailabilityOut,
} from './appointment-schemas.js';
import { itemOf } from './appointment-shapes.js';

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
      preHandler: anyone,
      schema: {
        ...original('The appointment’s session, if it has one (poll while waiting for it)'),
        params: IdParams,
        response: { 200: Envelope(SessionPollOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => {
      const { appointment: a, session: s } = await pollAppointmentSession(ctx.database, currentUser(req), toId(req.params.id));
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
