/**
 * The metrics listener: `/metrics`, `/health/live` and `/health/ready` on their own port
 * (METRICS_PORT), for processes without the API — `sessiongate worker` — and for an API process
 * asked to keep them off its public port. The routes are the API's own (plugins/observability),
 * so every process answers them the same way.
 */
import Fastify from 'fastify';
import fp from 'fastify-plugin';
import type { AppContext } from '../../context.js';
import observabilityPlugin from './observability.js';

export interface MetricsServer {
  /** The bound port (the configured one, or the one the OS chose for 0 in tests). */
  port: number;
  /** Set on shutdown: `/health/ready` answers 503 from then on. */
  draining: { value: boolean };
  close(): Promise<void>;
}

/** Listens on `port` (> 0) and `host`; a port already in use rejects (the process must not start half-observable). */
export async function startMetricsServer(ctx: AppContext, opts: { port: number; host: string }): Promise<MetricsServer> {
  const app = Fastify({ loggerInstance: ctx.log.child({ component: 'metrics' }), disableRequestLogging: true });
  await app.register(
    fp(
      async (instance) => {
        instance.decorate('ctx', ctx);
      },
      { name: 'context' },
    ),
  );
  await app.register(observabilityPlugin);
  await app.listen({ port: opts.port, host: opts.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  return { port, draining: app.draining, close: () => app.close() };
}
