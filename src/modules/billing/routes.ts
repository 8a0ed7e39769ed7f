/**
 * Billing routes (SPEC §5): a session's billing, the doctor's wallet, and the three legacy,
 * appointment-addressed billing endpoints behind the SessionContextGuard (SPEC §3.3).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { IdParams, Ok, errorResponses, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { ContextParams } from '../sessions/schemas.js';
import { legacyBilling, type LegacyBillingResponse } from './legacy.js';
import { DeductionBody, EmptyBody, IdempotencyHeaders, LegacyBillingOut, SessionBillingOut, WalletOut, WalletQuery } from './schemas.js';
import { doctorWallet, sessionBilling } from './views.js';

export default async function billingRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const anyone = app.auth();
  const legacyResponses = { 200: LegacyBillingOut, ...errorResponses };

  app.get(
    '/api/v2/sessions/:context/billing',
    {
      preHandler: anyone,
      schema: { tags: ['billing'], params: ContextParams, response: { 200: Ok(SessionBillingOut), ...errorResponses } },
    },
    async (req) => ({ success: true as const, data: await sessionBilling(ctx, currentUser(req), req.params.context) }),
  );

  app.get(
    '/api/v2/doctor/wallet',
    {
      preHandler: app.auth(['doctor']),
      schema: { tags: ['billing'], querystring: WalletQuery, response: { 200: Ok(WalletOut), ...errorResponses } },
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
    { preHandler: anyone, schema: { tags: ['legacy billing'], params: IdParams, body: EmptyBody, response: legacyResponses } },
    async (req, reply) =>
      send(reply, await legacyBilling(ctx, currentUser(req), { endpoint: 'end-session', appointmentId: toId(req.params.id) })),
  );

  app.post(
    '/api/v2/appointments/:id/process-payment',
    { preHandler: anyone, schema: { tags: ['legacy billing'], params: IdParams, body: EmptyBody, response: legacyResponses } },
    async (req, reply) =>
      send(reply, await legacyBilling(ctx, currentUser(req), { endpoint: 'process-payment', appointmentId: toId(req.params.id) })),
  );

  app.post(
    '/api/v2/text-appointments/process-deduction',
    {
      preHandler: anyone,
      schema: { tags: ['legacy billing'], headers: IdempotencyHeaders, body: DeductionBody, response: legacyResponses },
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
