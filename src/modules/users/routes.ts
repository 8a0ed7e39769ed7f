/** Setup and administration (admin), and the caller's own profile, credits and notifications. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Subscription, User } from '../../db/types.js';
import { PHASE_NAMES } from '../../config/flag-values.js';
import { Ok, problems, iso } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { creditBalances } from './credits.js';
import { DomainError } from '../../lib/errors.js';
import { IdParams, toId } from '../../lib/schemas.js';
import { importPlans, importUsers } from './import.js';
import {
  CreateUserBody,
  CreditsOut,
  FlagsOut,
  GrantBody,
  ImportReportOut,
  ImportUsersBody,
  NotificationOut,
  PlanOut,
  SubscriptionOut,
  UpsertUserBody,
  UpsertUserOut,
  UserOut,
} from './schemas.js';
import { createUser, deactivateUser, getUser, grantSubscription, listPlans, listSubscriptions } from './service.js';

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
      schema: {
        summary: 'Create a user (admin)',
        tags: ['admin'],
        body: CreateUserBody,
        response: { 201: Ok(UserOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req, reply) => {
      const user = await createUser(db, req.body);
      return reply.code(201).send({ success: true, data: userJson(user) });
    },
  );

  // Bringing users over from the existing backend (docs/migration.md): the same import as
  // `sessiongate users:import`, one user by id or a batch.
  app.put(
    '/api/v2/admin/users/:id',
    {
      preHandler: admin,
      schema: {
        summary: 'Create or update the user with this id, keeping the id (admin import)',
        tags: ['admin'],
        description: 'Create or update a user with this id (an import from the existing backend); idempotent.',
        params: IdParams,
        body: UpsertUserBody,
        response: { 200: Ok(UpsertUserOut), 201: Ok(UpsertUserOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'CONFLICT', 'NOT_FOUND') },
      },
    },
    async (req, reply) => {
      const id = toId(req.params.id);
      const report = await importUsers(db, [{ ...req.body, id }], { now: app.ctx.now() });
      const row = report.rows[0]!;
      if (row.status === 'failed') throw new DomainError(row.error!.error_code, row.error!.message, { id });
      const user = (await getUser(db, id))!;
      return reply
        .code(row.status === 'created' ? 201 : 200)
        .send({ success: true, data: { user: userJson(user), status: row.status, subscriptions: row.subscriptions } });
    },
  );

  app.post(
    '/api/v2/admin/users/import',
    {
      preHandler: admin,
      schema: {
        summary: 'Import a batch of users and subscriptions from the existing backend (admin)',
        tags: ['admin'],
        description:
          'Import a batch of export records (docs/migration.md). 200 with a report per record; `failed` > 0 when any record was refused.',
        body: ImportUsersBody,
        response: { 200: Ok(ImportReportOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req) => {
      const dryRun = req.body.dry_run ?? false;
      if (!dryRun) await importPlans(db, req.body.plans ?? []);
      const report = await importUsers(db, req.body.users, { dryRun, now: app.ctx.now() });
      return { success: true as const, data: report };
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
        response: { 200: Ok(UserOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => {
      const user = await deactivateUser(db, app.ctx.bus, toId(req.params.id), app.ctx.now(), currentUser(req));
      return { success: true as const, data: userJson(user) };
    },
  );

  app.get(
    '/api/v2/plans',
    { schema: { summary: 'List the subscription plans', tags: ['billing'], response: { 200: Ok(Type.Array(PlanOut)), ...problems() } } },
    async () => ({
      success: true as const,
      data: (await listPlans(db)).map((p) => ({ ...p })),
    }),
  );

  app.post(
    '/api/v2/admin/subscriptions',
    {
      preHandler: admin,
      schema: {
        summary: 'Grant a plan to a patient, idempotent by payment reference (admin)',
        tags: ['admin'],
        body: GrantBody,
        response: {
          200: Ok(SubscriptionOut),
          201: Ok(SubscriptionOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT'),
        },
      },
    },
    async (req, reply) => {
      const { subscription, created } = await grantSubscription(db, req.body, app.ctx.now());
      return reply.code(created ? 201 : 200).send({ success: true, data: subscriptionJson(subscription) });
    },
  );

  app.get(
    '/api/v2/admin/flags',
    {
      preHandler: admin,
      schema: {
        summary: 'The effective feature flags and rollout phase (admin)',
        tags: ['admin'],
        response: { 200: Ok(FlagsOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async () => {
      const flags = await app.ctx.flags.current();
      const phase = app.ctx.flags.phase();
      return { success: true as const, data: { flags, phase, phase_name: PHASE_NAMES[phase] } };
    },
  );

  app.get(
    '/api/v2/me',
    {
      preHandler: anyone,
      schema: { summary: 'The authenticated user', tags: ['me'], response: { 200: Ok(UserOut), ...problems('UNAUTHENTICATED') } },
    },
    async (req) => {
      const u = currentUser(req);
      return { success: true as const, data: { id: u.id, role: u.role, name: u.name, country: u.country, timezone: u.timezone } };
    },
  );

  app.get(
    '/api/v2/me/credits',
    {
      preHandler: anyone,
      schema: {
        summary: "The caller's credit balances and subscriptions",
        tags: ['me'],
        response: { 200: Ok(CreditsOut), ...problems('UNAUTHENTICATED') },
      },
    },
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
        summary: "The caller's notifications, newest first",
        tags: ['me'],
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.String({ pattern: '^(100|[1-9][0-9]?)$' })),
            before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Ok(Type.Array(NotificationOut)), ...problems('UNAUTHENTICATED') },
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
