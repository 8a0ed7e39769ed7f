/**
 * Text sessions of the original app: start, look-ups, status and ending.
 *
 * Every route maps the app's request onto a core service and the answer back into the app's
 * shape: instant sessions, look-ups, expiry-on-read, ending and settlement are the sessions
 * module's; billing is the server's own (a client "tick" only brings the core's billing up to
 * date, it never charges by itself: text-billing.ts has the billing calls).
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { DomainError } from '../../lib/errors.js';
import { iso } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import {
  createInstantSession,
  endSession,
  freshSession,
  readableSession,
  startAppointmentSession,
} from '../../modules/sessions/service.js';
import { doctorsAvailability, listOwnSessions } from '../../modules/sessions/lists.js';
import { isLive } from '../../modules/sessions/state.js';
import { humanErrors, originalProblems } from './human.js';
import { idOf, LooseId, textSessionContext } from './ids.js';
import { AnyBody, ChatPerson, chatPerson, Envelope, OPEN, OpenObject as Obj, original, PathId as Params } from './shapes.js';
import { TextSession, textSessionJson } from './session-shapes.js';

const open = OPEN;

export default async function textSessionsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const anyone = app.auth();
  humanErrors(app);

  // ---- start ---------------------------------------------------------------------------------

  app.post(
    '/api/text-sessions/start',
    {
      preHandler: app.auth(['patient']),
      config: { rateLimit: { max: ctx.config.rateLimitCreatePerMinute, timeWindow: '1 minute' } },
      schema: {
        ...original('Start an instant text session with a doctor ("Talk Now")'),
        body: Type.Object({ doctor_id: LooseId, reason: Type.Optional(Type.String({ maxLength: 1000 })) }, open),
        response: { 201: Envelope(Obj, OPEN), ...originalProblems },
      },
    },
    async (req, reply) => {
      const actor = currentUser(req);
      let s;
      try {
        s = await createInstantSession(ctx, actor, { doctor_id: idOf(req.body.doctor_id), modality: 'text' });
      } catch (err) {
        // The app opens its "doctor busy" dialog on this exact wording.
        if (err instanceof DomainError && err.code === 'CONFLICT' && 'doctor_id' in err.details) {
          throw new DomainError('CONFLICT', 'Doctor is currently in another session', err.details);
        }
        throw err;
      }
      const json = await textSessionJson(ctx, s, actor);
      return reply.code(201).send({
        success: true,
        message: 'Text session started',
        data: {
          ...json,
          session_id: s.id,
          // Laravel answered the session id here; the app reads it as the room id.
          appointment_id: s.id,
          doctor: { ...json.doctor, name: json.doctor_name },
          sessions_remaining: json.remaining_sessions,
        },
      });
    },
  );

  // ---- lists — registered before `/:id` for readability; the router prefers static parts anyway

  app.get(
    '/api/text-sessions/active-sessions',
    {
      preHandler: anyone,
      schema: {
        ...original("The caller's live text sessions (waiting_for_doctor or active)"),
        response: { 200: Envelope(Type.Array(TextSession), OPEN), ...originalProblems },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const { rows } = await listOwnSessions(ctx.db, actor, { kind: 'text', live: true, limit: 100, offset: 0 });
      const fresh = await Promise.all(rows.map((s) => freshSession(ctx, s)));
      const live = fresh.filter((s) => isLive(s.status));
      return { success: true as const, data: await Promise.all(live.map((s) => textSessionJson(ctx, s, actor))) };
    },
  );

  app.get(
    '/api/text-sessions/history',
    {
      preHandler: anyone,
      schema: {
        ...original("The caller's finished text sessions, as a Laravel paginator"),
        querystring: Type.Object(
          {
            page: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })),
            per_page: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$' })),
          },
          open,
        ),
        response: {
          200: Envelope(
            Type.Object(
              {
                current_page: Type.Integer(),
                data: Type.Array(TextSession),
                last_page: Type.Integer(),
                per_page: Type.Integer(),
                total: Type.Integer(),
              },
              open,
            ),
            OPEN,
          ),
          ...originalProblems,
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const page = Math.max(1, Number(req.query.page ?? 1));
      const perPage = Math.min(100, Math.max(1, Number(req.query.per_page ?? 20)));
      const { rows, total } = await listOwnSessions(ctx.db, actor, {
        kind: 'text',
        live: false,
        limit: perPage,
        offset: (page - 1) * perPage,
      });
      const data = await Promise.all(rows.map((s) => textSessionJson(ctx, s, actor)));
      const lastPage = Math.max(1, Math.ceil(total / perPage));
      return {
        success: true as const,
        data: {
          current_page: page,
          data,
          last_page: lastPage,
          per_page: perPage,
          total,
          from: data.length ? (page - 1) * perPage + 1 : null,
          to: data.length ? (page - 1) * perPage + data.length : null,
        },
      };
    },
  );

  app.get(
    '/api/text-sessions/available-doctors',
    {
      preHandler: anyone,
      schema: {
        ...original('Doctors and whether each is free for an instant session now'),
        response: {
          200: Envelope(
            Type.Array(Type.Object({ ...ChatPerson.properties, specialization: Type.Null(), is_available_now: Type.Boolean() }, open)),
            OPEN,
          ),
          ...originalProblems,
        },
      },
    },
    async () => {
      const doctors = await doctorsAvailability(ctx.db);
      return {
        success: true as const,
        data: doctors.map((d) => ({
          ...chatPerson({ ...d, role: 'doctor' }),
          name: d.name,
          specialization: null,
          is_available_now: d.is_available_now,
        })),
      };
    },
  );

  app.post(
    '/api/text-sessions/create-from-appointment',
    {
      preHandler: anyone,
      schema: {
        ...original("Give a confirmed appointment whose time has come its session (the converter's fallback)"),
        body: Type.Object({ appointment_id: LooseId }, open),
        response: { 200: Envelope(TextSession, OPEN), 201: Envelope(TextSession, OPEN), ...originalProblems },
      },
    },
    async (req, reply) => {
      const actor = currentUser(req);
      const { session, created } = await startAppointmentSession(ctx, actor, idOf(req.body.appointment_id));
      return reply.code(created ? 201 : 200).send({ success: true, data: await textSessionJson(ctx, session, actor) });
    },
  );

  // ---- one session ---------------------------------------------------------------------------

  const readable = async (actor: ReturnType<typeof currentUser>, rawId: string) =>
    freshSession(ctx, await readableSession(ctx.db, actor, textSessionContext(rawId)));

  app.get(
    '/api/text-sessions/:id',
    {
      preHandler: anyone,
      schema: {
        ...original('A text session (id as 12, text_session_12 or text_session:12)'),
        params: Params,
        response: { 200: Envelope(TextSession, OPEN), ...originalProblems },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      return { success: true as const, data: await textSessionJson(ctx, await readable(actor, req.params.id), actor) };
    },
  );

  const CHECK_STATUS = { waiting_for_doctor: 'waiting', active: 'active', ended: 'ended', expired: 'expired' } as const;

  app.get(
    '/api/text-sessions/:id/check-response',
    {
      preHandler: anyone,
      schema: {
        ...original('The doctor-response countdown (top-level fields, not wrapped in data)'),
        params: Params,
        response: {
          200: Type.Object(
            {
              success: Type.Literal(true),
              status: Type.String(),
              timeRemaining: Type.Union([Type.Integer(), Type.Null()]),
              doctor_response_deadline: Type.Union([Type.String(), Type.Null()]),
              remainingTimeMinutes: Type.Integer(),
              remainingSessions: Type.Integer(),
              message: Type.String(),
            },
            open,
          ),
          ...originalProblems,
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const s = await readable(actor, req.params.id);
      const status = CHECK_STATUS[s.status as keyof typeof CHECK_STATUS] ?? 'ended';
      const deadline = s.status === 'waiting_for_doctor' ? s.doctor_response_deadline : null;
      const timeRemaining = deadline ? Math.max(0, Math.ceil((deadline.getTime() - ctx.now().getTime()) / 1000)) : null;
      const json = await textSessionJson(ctx, s, actor);
      const message = {
        waiting: deadline ? 'Waiting for the doctor to respond' : 'Waiting for the first message',
        active: 'The doctor has responded',
        ended: 'The session has ended',
        expired: 'The doctor did not respond in time; the session expired and nothing was charged',
      }[status];
      return {
        success: true as const,
        status,
        timeRemaining,
        doctor_response_deadline: iso(deadline),
        remainingTimeMinutes: json.remaining_time_minutes,
        remainingSessions: json.remaining_sessions,
        message,
        session_context: json.session_context,
      };
    },
  );

  app.put(
    '/api/text-sessions/:id/status',
    {
      preHandler: anyone,
      schema: {
        ...original('The app reports a status; the server decides (only "ended" changes anything: it ends the session)'),
        params: Params,
        body: Type.Object({ status: Type.String({ maxLength: 32 }) }, open),
        response: { 200: Envelope(TextSession, OPEN), ...originalProblems },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const context = textSessionContext(req.params.id);
      if (req.body.status === 'ended') {
        const { after } = await endSession(ctx, actor, context);
        return { success: true as const, message: 'Session ended', data: await textSessionJson(ctx, after, actor) };
      }
      // Activation is the doctor's first message, expiry the server's clock: a client cannot set
      // either, so the answer is the session as it truly is.
      const s = await readable(actor, req.params.id);
      return { success: true as const, message: `Session is ${s.status}`, data: await textSessionJson(ctx, s, actor) };
    },
  );

  app.post(
    '/api/text-sessions/:id/end',
    {
      preHandler: anyone,
      schema: {
        ...original('End a text session (body-less POST); settles its billing'),
        params: Params,
        body: AnyBody,
        response: {
          200: Envelope(
            Type.Object(
              {
                status: Type.String(),
                ended_successfully: Type.Boolean(),
                doctor_name: Type.String(),
                patient_name: Type.String(),
                duration: Type.Integer(),
                patient_id: Type.Integer(),
                doctor_id: Type.Integer(),
                session: TextSession,
              },
              open,
            ),
            OPEN,
          ),
          ...originalProblems,
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const { before, after } = await endSession(ctx, actor, textSessionContext(req.params.id));
      const json = await textSessionJson(ctx, after, actor);
      const already = !isLive(before.status);
      return {
        success: true as const,
        message: already ? 'Session was already ended' : 'Session ended',
        data: {
          status: already ? 'already_ended' : 'ended',
          ended_successfully: true,
          doctor_name: json.doctor_name,
          patient_name: json.patient_name,
          duration: json.elapsed_minutes,
          patient_id: after.patient_id,
          doctor_id: after.doctor_id,
          session: json,
        },
      };
    },
  );
}
