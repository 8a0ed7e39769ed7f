/**
 * Billing routes: a session's billing, the doctor's wallet, and the three legacy,
 * appointment-addressed billing endpoints behind the SessionContextGuard.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { IdParams, Ok, problems, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { ContextParams } from '../sessions/schemas.js';
import { legacyBilling, type LegacyBillingResponse } from './legacy.js';
import { DeductionBody, EmptyBody, IdempotencyHeaders, LegacyBillingOut, SessionBillingOut, WalletOut, WalletQuery } from './schemas.js';
import { doctorWallet, sessionBilling } from './views.js';

export default async function billingRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const anyone = app.auth();
  // The three legacy endpoints answer alike: the billing outcome, or the guard's and billing's refusals.
  const legacyResponses = {
    200: LegacyBillingOut,
    ...problems(
      'UNAUTHENTICATED',
      'FORBIDDEN',
      'NOT_FOUND',
      'CONFLICT',
      'INSUFFICIENT_CREDITS',
      'SESSION_BILLING_REQUIRED',
      'SESSION_NOT_ACTIVE',
    ),
  };

  app.get(
    '/api/v2/sessions/:context/billing',
    {
      preHandler: anyone,
      schema: {
        summary: "A session's billing: units charged, credits, payout",
        tags: ['billing'],
        params: ContextParams,
        response: { 200: Ok(SessionBillingOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED') },
      },
    },
    async (req) => ({ success: true as const, data: await sessionBilling(ctx, currentUser(req), req.params.context) }),
  );

  app.get(
    '/api/v2/doctor/wallet',
    {
      preHandler: app.auth(['doctor']),
      schema: {
        summary: "The doctor's wallet: balance, currency, ledger entries (doctor)",
        tags: ['billing'],
        querystring: WalletQuery,
        response: { 200: Ok(WalletOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req) => {
      const page = { limit: Number(req.query.limit ?? 50), before: req.query.before === undefined ? undefined : toId(req.query.before) };
      return { success: true as const, data: await doctorWallet(ctx, currentUser(req), page) };
    },
  );

  // A replay of an Idempotency-Key returns the stored response, marked as such.
  const send = (reply: FastifyReply, r: LegacyBillingResponse) =>
    reply.code(r.status).header('idempotent-replayed', String(r.replayed)).send(r.body);

  app.post(
    '/api/v2/appointments/:id/end-session',
    {
      preHandler: anyone,
      schema: {
        summary: "Legacy: end an appointment's consultation and bill it (guarded; use POST /api/v2/sessions/{context}/end)",
        deprecated: true,
        tags: ['legacy billing'],
        params: IdParams,
        body: EmptyBody,
        response: legacyResponses,
      },
    },
    async (req, reply) =>
      send(reply, await legacyBilling(ctx, currentUser(req), { endpoint: 'end-session', appointmentId: toId(req.params.id) })),
  );

  app.post(
    '/api/v2/appointments/:id/process-payment',
    {
      preHandler: anyone,
      schema: {
        summary: "Legacy: charge an appointment's consultation (guarded; billing runs on the server)",
        deprecated: true,
        tags: ['legacy billing'],
        params: IdParams,
        body: EmptyBody,
        response: legacyResponses,
      },
    },
    async (req, reply) =>
      send(reply, await legacyBilling(ctx, currentUser(req), { endpoint: 'process-payment', appointmentId: toId(req.params.id) })),
  );

  app.post(
    '/api/v2/text-appointments/process-deduction',
    {
      preHandler: anyone,
      schema: {
        summary: 'Legacy: deduct units for a text appointment (guarded; idempotent by Idempotency-Key)',
        deprecated: true,
        tags: ['legacy billing'],
        headers: IdempotencyHeaders,
        body: DeductionBody,
        response: legacyResponses,
      },
    },
    async (req, reply) =>
      send(
        reply,
        await legacyBilling(ctx, currentUser(req), {
          endpoint: 'process-deduction',
          appointmentId: req.body.appointment_id,
          deduction: req.body,
          idempotencyKey: req.headers['idempotency-key'],
        }),
      ),
  );
}
