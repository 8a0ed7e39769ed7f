/** Session routes: look-up, instant sessions, start from an appointment, end, calls. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { IdParams, Ok, problems, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { ContextParams, InstantBody, SessionOut } from './schemas.js';
import {
  callAction,
  createInstantSession,
  endSession,
  freshSession,
  readableSession,
  sessionJson,
  startAppointmentSession,
} from './service.js';

export default async function sessionsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const anyone = app.auth();

  app.get(
    '/api/v2/sessions/:context',
    {
      preHandler: anyone,
      schema: {
        summary: 'A session',
        tags: ['sessions'],
        params: ContextParams,
        response: { 200: Ok(SessionOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED') },
      },
    },
    async (req) => {
      const s = await readableSession(ctx.db, currentUser(req), req.params.context);
      return { success: true as const, data: sessionJson(await freshSession(ctx, s)) };
    },
  );

  app.post(
    '/api/v2/sessions',
    {
      preHandler: app.auth(['patient']),
      config: { rateLimit: { max: app.ctx.config.rateLimitCreatePerMinute, timeWindow: '1 minute' } },
      schema: {
        summary: 'Start an instant session with a doctor (patient)',
        tags: ['sessions'],
        body: InstantBody,
        response: { 201: Ok(SessionOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT', 'INSUFFICIENT_CREDITS') },
      },
    },
    async (req, reply) => {
      const s = await createInstantSession(ctx, currentUser(req), req.body);
      return reply.code(201).send({ success: true, data: sessionJson(s) });
    },
  );

  app.post(
    '/api/v2/appointments/:id/start-session',
    {
      preHandler: anyone,
      schema: {
        summary: "Start the appointment's session now (either participant, from 15 minutes before; idempotent)",
        tags: ['sessions'],
        params: IdParams,
        response: {
          200: Ok(SessionOut),
          201: Ok(SessionOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT', 'INSUFFICIENT_CREDITS'),
        },
      },
    },
    async (req, reply) => {
      const { session, created } = await startAppointmentSession(ctx, currentUser(req), toId(req.params.id));
      return reply.code(created ? 201 : 200).send({ success: true, data: sessionJson(session) });
    },
  );

  app.post(
    '/api/v2/sessions/:context/end',
    {
      preHandler: anyone,
      schema: {
        summary: 'End a session and settle its billing (either participant; idempotent)',
        tags: ['sessions'],
        params: ContextParams,
        response: {
          200: Ok(SessionOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'CONFLICT', 'INSUFFICIENT_CREDITS'),
        },
      },
    },
    async (req) => {
      const { after } = await endSession(ctx, currentUser(req), req.params.context);
      return { success: true as const, data: sessionJson(after) };
    },
  );

  for (const action of ['join', 'leave', 'decline'] as const) {
    app.post(
      `/api/v2/sessions/:context/call/${action}`,
      {
        preHandler: anyone,
        schema: {
          summary: 'Join, leave or decline a call',
          tags: ['calls'],
          params: ContextParams,
          response: {
            200: Ok(SessionOut),
            ...problems(
              'UNAUTHENTICATED',
              'FORBIDDEN',
              'NOT_FOUND',
              'SESSION_CONTEXT_REQUIRED',
              'SESSION_NOT_ACTIVE',
              'CONFLICT',
              'INSUFFICIENT_CREDITS',
            ),
          },
        },
      },
      async (req) => {
        const { after } = await callAction(ctx, currentUser(req), req.params.context, action);
        return { success: true as const, data: sessionJson(after) };
      },
    );
  }
}
