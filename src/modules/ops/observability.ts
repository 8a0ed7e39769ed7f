/**
 * Health, readiness and metrics. Readiness is 503 while the database is unreachable or the
 * process is draining, so a load balancer stops sending traffic before the socket closes.
 * Registered by the API app and by the metrics listener of the worker (modules/ops/metrics-server).
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Type } from '@sinclair/typebox';
import { renderMetrics } from './scrape.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Set by the process on shutdown: readiness fails from then on. */
    draining: { value: boolean };
  }
}

const Health = Type.Object({ status: Type.String(), database: Type.Optional(Type.String()) });

export default fp(
  async function observability(app: FastifyInstance) {
    const { metrics } = app.ctx;
    app.decorate('draining', { value: false });

    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched';
      const labels = { method: req.method, route, status_code: String(reply.statusCode) };
      metrics.http.requests.inc(labels);
      metrics.http.duration.observe(labels, reply.elapsedTime / 1000);
    });

    app.get(
      '/health/live',
      {
        schema: { summary: 'Liveness: the process answers', tags: ['operations'], security: [], response: { 200: Health } },
        logLevel: 'warn',
      },
      async () => ({ status: 'ok' }),
    );

    app.get(
      '/health/ready',
      {
        schema: {
          summary: 'Readiness: 200 while the database answers, 503 while it does not or the process is shutting down',
          tags: ['operations'],
          security: [],
          response: { 200: Health, 503: Health },
        },
        logLevel: 'warn',
      },
      async (_req, reply) => {
        if (app.draining.value) return reply.code(503).send({ status: 'draining' });
        const ok = await app.ctx.database.ping();
        return ok
          ? { status: 'ok', database: app.ctx.database.kind }
          : reply.code(503).send({ status: 'unavailable', database: app.ctx.database.kind });
      },
    );

    const metricsSchema = {
      summary: 'Prometheus metrics of this process (text exposition format)',
      tags: ['operations'],
      security: [],
      response: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
    };
    app.get('/metrics', { schema: metricsSchema, logLevel: 'warn' }, async (_req, reply) => {
      reply.type(metrics.registry.contentType);
      return renderMetrics(app.ctx);
    });
  },
  { name: 'observability', dependencies: ['context'] },
);
