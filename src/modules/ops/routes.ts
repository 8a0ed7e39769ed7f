/**
 * Operations endpoints (admin): the rollout status (same object as `sessiongate rollout:status
 * --json`), the /ops page summary, and the /ops page itself.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ok, problems } from '../../lib/schemas.js';
import { opsPageCsp, opsPageHtml } from './page.js';
import { rolloutStatus } from './rollout.js';
import { OpsSummary, RolloutStatus } from './schemas.js';
import { opsSummary } from './summary.js';

export default async function opsRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const admin = app.auth(['admin']);

  app.get(
    '/api/v2/admin/rollout',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Rollout status: per flag, what turning it now would block, and a verdict',
        response: { 200: Ok(RolloutStatus), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async () => ({ success: true as const, data: await rolloutStatus(app.ctx.db, await app.ctx.flags.current()) }),
  );

  app.get(
    '/api/v2/admin/ops/summary',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Everything the /ops page shows: monitor, rollout, backlog trend, conversions, job runs',
        response: { 200: Ok(OpsSummary), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (_req, reply) => {
      reply.header('cache-control', 'no-store');
      return { success: true as const, data: await opsSummary(app.ctx.db, await app.ctx.flags.current(), app.ctx.config) };
    },
  );

  // The page shell holds no data (the summary API above is admin-only), so it is served without
  // auth. Its request log stays at warn: the URL may carry ?token= on the first visit.
  app.get(
    '/ops',
    {
      logLevel: 'warn',
      schema: {
        hide: true,
        querystring: Type.Object({ token: Type.Optional(Type.String({ maxLength: 4096 })) }, { additionalProperties: false }),
      },
    },
    async (_req, reply) => {
      const nonce = randomBytes(16).toString('base64');
      return reply
        .header('content-security-policy', opsPageCsp(nonce))
        .header('cache-control', 'no-store')
        .header('referrer-policy', 'no-referrer')
        .header('x-frame-options', 'DENY')
        .type('text/html; charset=utf-8')
        .send(opsPageHtml(nonce));
    },
  );
}
