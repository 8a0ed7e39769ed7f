/** Setup and administration (admin), and the caller's own profile, credits and notifications. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Subscription, User } from '../../db/types.js';
import { PHASE_NAMES } from '../../config/flag-values.js';
import { IdParams, Ok, errorResponses, iso, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { creditBalances } from '../billing/credits.js';
import { CreateUserBody, CreditsOut, FlagsOut, GrantBody, NotificationOut, PlanOut, SubscriptionOut, UserOut } from './schemas.js';
import { createUser, deactivateUser, grantSubscription, listPlans, listSubscriptions } from './service.js';

export const userJson = (u: User) => ({
  id: u.id,
  role: u.role,
  name: u.name,
  country: u.country,
  timezone: u.timezone,
  created_at: iso(u.created_at)!,
  deactivated_at: iso(u.deactivated_at),
});

export const subscriptionJson = (s: Subscription) => ({
  id: s.id,
  patient_id: s.patient_id,
  plan_id: s.plan_id,
  payment_reference: s.payment_reference,
  credits: { text: s.text_credits, voice: s.voice_credits, video: s.video_credits },
  remaining: { text: s.text_remaining, voice: s.voice_remaining, video: s.video_remaining },
  starts_at: iso(s.starts_at)!,
  expires_at: iso(s.expires_at)!,
});

export default async function usersRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { db } = app.ctx;
  const admin = app.auth(['admin']);
  const anyone = app.auth();

  app.post(
    '/api/v2/admin/users',
    {
      preHandler: admin,
      config: { rateLimit: { max: app.ctx.config.rateLimitCreatePerMinute * 5, timeWindow: '1 minute' } },
      schema: { tags: ['admin'], body: CreateUserBody, response: { 201: Ok(UserOut), ...errorResponses } },
    },
    async (req, reply) => {
      const user = await createUser(db, req.body);
      return reply.code(201).send({ success: true, data: userJson(user) });
    },
  );

  app.post(
    '/api/v2/admin/users/:id/deactivate',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Deactivate a user: their tokens and sockets stop working at once; their records stay (idempotent)',
        params: IdParams,
        response: { 200: Ok(UserOut), ...errorResponses },
      },
    },
    async (req) => {
      const user = await deactivateUser(db, app.ctx.bus, toId(req.params.id), app.ctx.now(), currentUser(req));
      return { success: true as const, data: userJson(user) };
    },
  );

  app.get('/api/v2/plans', { schema: { tags: ['billing'], response: { 200: Ok(Type.Array(PlanOut)), ...errorResponses } } }, async () => ({
    success: true as const,
    data: (await listPlans(db)).map((p) => ({ ...p })),
  }));

  app.post(
    '/api/v2/admin/subscriptions',
    {
      preHandler: admin,
      schema: { tags: ['admin'], body: GrantBody, response: { 200: Ok(SubscriptionOut), 201: Ok(SubscriptionOut), ...errorResponses } },
    },
    async (req, reply) => {
      const { subscription, created } = await grantSubscription(db, req.body, app.ctx.now());
      return reply.code(created ? 201 : 200).send({ success: true, data: subscriptionJson(subscription) });
    },
  );

  app.get(
    '/api/v2/admin/flags',
    { preHandler: admin, schema: { tags: ['admin'], response: { 200: Ok(FlagsOut), ...errorResponses } } },
    async () => {
      const flags = await app.ctx.flags.current();
      const phase = app.ctx.flags.phase();
      return { success: true as const, data: { flags, phase, phase_name: PHASE_NAMES[phase] } };
    },
  );

  app.get(
    '/api/v2/me',
    { preHandler: anyone, schema: { tags: ['me'], response: { 200: Ok(UserOut), ...errorResponses } } },
    async (req) => {
      const u = currentUser(req);
      return { success: true as const, data: { id: u.id, role: u.role, name: u.name, country: u.country, timezone: u.timezone } };
    },
  );

  app.get(
    '/api/v2/me/credits',
    { preHandler: anyone, schema: { tags: ['me'], response: { 200: Ok(CreditsOut), ...errorResponses } } },
    async (req) => {
      const u = currentUser(req);
      const now = app.ctx.now();
      const [balances, subs] = await Promise.all([creditBalances(db, u.id, now), listSubscriptions(db, u.id)]);
      return {
        success: true as const,
        data: {
          balances,
          subscriptions: subs.map((s) => ({ ...subscriptionJson(s), expired: s.expires_at <= now })),
        },
      };
    },
  );

  app.get(
    '/api/v2/me/notifications',
    {
      preHandler: anyone,
      schema: {
        tags: ['me'],
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.String({ pattern: '^(100|[1-9][0-9]?)$' })),
            before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Ok(Type.Array(NotificationOut)), ...errorResponses },
      },
    },
    async (req) => {
      const u = currentUser(req);
      let q = db
        .selectFrom('notifications')
        .select(['id', 'kind', 'payload', 'created_at', 'read_at'])
        .where('user_id', '=', u.id)
        .orderBy('id', 'desc')
        .limit(Number(req.query.limit ?? 50));
      if (req.query.before) q = q.where('id', '<', Number(req.query.before));
      const rows = await q.execute();
      return {
        success: true as const,
        data: rows.map((n) => ({ ...n, created_at: iso(n.created_at)!, read_at: iso(n.read_at) })),
      };
    },
  );
}
