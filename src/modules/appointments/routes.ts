/** Appointment booking and look-ups. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Appointment } from '../../db/types.js';
import { IdParams, Ok, problems, iso, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { formatSessionContext } from '../session-context.js';
import { sessionKindForModality, modalityForAppointmentType } from './modality.js';
import { AppointmentOut, AppointmentSessionOut, BookBody, ImportBody, ListQuery } from './schemas.js';
import {
  pollAppointmentSession,
  bookAppointment,
  bookingLimitsOf,
  cancelAppointment,
  confirmAppointment,
  importAppointment,
  listAppointments,
  readableAppointment,
  sessionContextOf,
} from './service.js';

/** The session context of a linked appointment, derived from its type (no extra query). */
function linkedContext(a: Appointment): string | null {
  if (a.session_id === null) return null;
  const modality = modalityForAppointmentType(a.appointment_type);
  return modality ? formatSessionContext(sessionKindForModality(modality), a.session_id) : null;
}

export const appointmentJson = (a: Appointment) => ({
  id: a.id,
  patient_id: a.patient_id,
  doctor_id: a.doctor_id,
  appointment_type: a.appointment_type,
  scheduled_at: iso(a.scheduled_at)!,
  duration_minutes: a.duration_minutes,
  status: a.status,
  session_id: a.session_id,
  session_context: linkedContext(a),
  reason: a.reason,
  patient_timezone: a.patient_timezone,
  created_at: iso(a.created_at)!,
  updated_at: iso(a.updated_at)!,
});

export default async function appointmentsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.ctx;
  const anyone = app.auth();

  app.post(
    '/api/v2/appointments',
    {
      preHandler: app.auth(['patient']),
      config: { rateLimit: { max: app.ctx.config.rateLimitCreatePerMinute, timeWindow: '1 minute' } },
      schema: {
        summary: 'Book an appointment (patient)',
        tags: ['appointments'],
        body: BookBody,
        response: { 201: Ok(AppointmentOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT', 'INSUFFICIENT_CREDITS') },
      },
    },
    async (req, reply) => {
      const a = await bookAppointment(db, currentUser(req), req.body, app.ctx.now(), bookingLimitsOf(app.ctx.config));
      return reply.code(201).send({ success: true, data: appointmentJson(a) });
    },
  );

  app.post(
    '/api/v2/admin/appointments',
    {
      preHandler: app.auth(['admin']),
      schema: {
        summary: 'Create an appointment in any status, e.g. imported from the legacy system (admin)',
        tags: ['admin'],
        body: ImportBody,
        response: { 201: Ok(AppointmentOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT') },
      },
    },
    async (req, reply) => {
      const a = await importAppointment(db, req.body);
      return reply.code(201).send({ success: true, data: appointmentJson(a) });
    },
  );

  app.get(
    '/api/v2/appointments',
    {
      preHandler: anyone,
      schema: {
        summary: "List the caller's appointments",
        tags: ['appointments'],
        querystring: ListQuery,
        response: { 200: Ok(Type.Array(AppointmentOut)), ...problems('UNAUTHENTICATED') },
      },
    },
    async (req) => {
      const rows = await listAppointments(db, currentUser(req), {
        status: req.query.status,
        before: req.query.before ? Number(req.query.before) : undefined,
        limit: Number(req.query.limit ?? 50),
      });
      return { success: true as const, data: rows.map(appointmentJson) };
    },
  );

  app.get(
    '/api/v2/appointments/:id',
    {
      preHandler: anyone,
      schema: {
        summary: 'An appointment',
        tags: ['appointments'],
        params: IdParams,
        response: { 200: Ok(AppointmentOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => ({
      success: true as const,
      data: appointmentJson(await readableAppointment(db, currentUser(req), toId(req.params.id))),
    }),
  );

  app.post(
    '/api/v2/appointments/:id/confirm',
    {
      preHandler: app.auth(['doctor']),
      schema: {
        summary: 'Confirm an appointment (its doctor)',
        tags: ['appointments'],
        params: IdParams,
        response: { 200: Ok(AppointmentOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT') },
      },
    },
    async (req) => ({
      success: true as const,
      data: appointmentJson(await confirmAppointment(db, currentUser(req), toId(req.params.id))),
    }),
  );

  app.post(
    '/api/v2/appointments/:id/cancel',
    {
      preHandler: anyone,
      schema: {
        summary: 'Cancel an appointment (either participant)',
        tags: ['appointments'],
        params: IdParams,
        response: { 200: Ok(AppointmentOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT') },
      },
    },
    async (req) => ({
      success: true as const,
      data: appointmentJson(await cancelAppointment(db, currentUser(req), toId(req.params.id))),
    }),
  );

  app.get(
    '/api/v2/appointments/:id/session',
    {
      preHandler: app.auth(),
      schema: {
        summary: "The appointment's session, if any: what clients poll while waiting",
        tags: ['appointments'],
        description: 'Poll this while chat answers SESSION_NOT_READY: session_id appears when the session starts.',
        params: IdParams,
        response: { 200: Ok(AppointmentSessionOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => {
      const { appointment: a, session: s } = await pollAppointmentSession(app.ctx.database, currentUser(req), toId(req.params.id));
      return {
        success: true as const,
        data: {
          appointment_id: a.id,
          session_id: s?.id ?? null,
          session_context: sessionContextOf(s),
          session_status: s?.status ?? null,
          appointment_status: a.status,
          status: a.status,
          appointment_type: a.appointment_type,
          scheduled_at: iso(a.scheduled_at)!,
          doctor_response_deadline: iso(s?.doctor_response_deadline),
        },
      };
    },
  );
}
