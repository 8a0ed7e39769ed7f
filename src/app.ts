/**
 * The HTTP application as one Fastify instance: infrastructure plugins first, then the feature
 * modules. Tests build it with `buildApp(ctx)` and drive it with `inject` — no listening socket.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AppContext } from './context.js';
import { Problem } from './lib/schemas.js';
import authPlugin from './plugins/auth.js';
import errorsPlugin, { sendProblem } from './plugins/errors.js';
import observabilityPlugin from './modules/ops/observability.js';
import rateLimitsPlugin from './plugins/rate-limit.js';
import usersRoutes from './modules/users/routes.js';
import appointmentsRoutes from './modules/appointments/routes.js';
import sessionsRoutes from './modules/sessions/routes.js';
import chatRoutes from './modules/chat/routes.js';
import billingRoutes from './modules/billing/routes.js';
import opsRoutes from './modules/ops/routes.js';
import asyncApiRoute from './realtime/asyncapi.js';
import realtimeGateway from './gateway/gateway.js';
import websocketSupport from './gateway/websocket.js';
import mediaRoutes from './modules/media/routes.js';
import originalContract from './compat/original/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    ctx: AppContext;
  }
}

export type App = FastifyInstance;

const SUCCESS_DESCRIPTIONS: Record<string, string> = { '200': 'OK', '201': 'Created' };
/** A client's request id: up to 128 characters of letters, digits and `._:-`. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Upper bound for any JSON body; chat messages are ≤ 1000 characters. */
export const BODY_LIMIT_BYTES = 64 * 1024;

export async function buildApp(ctx: AppContext, opts: { logger?: FastifyServerOptions['loggerInstance'] } = {}) {
  const app = Fastify({
    loggerInstance: opts.logger ?? ctx.log,
    bodyLimit: BODY_LIMIT_BYTES,
    // Clients may pass their own request id for tracing — taken only when it is short and plain
    // (it is echoed and written into every log line); otherwise one is generated.
    requestIdHeader: false,
    genReqId: (req) => {
      const id = req.headers['x-request-id'];
      return typeof id === 'string' && REQUEST_ID.test(id) ? id : randomUUID();
    },
    trustProxy: false,
    // Router-level failures (a malformed or overlong URL) leave as problem documents too.
    frameworkErrors: (err, _req, reply) => {
      void sendProblem(
        reply,
        'VALIDATION_FAILED',
        err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is too long' : 'Malformed request URL',
      );
    },
    routerOptions: { maxParamLength: 200 },
    ajv: {
      customOptions: {
        // No coercion: "5" is not 5. Unknown fields are rejected by additionalProperties: false.
        coerceTypes: false,
        removeAdditional: false,
        allErrors: false,
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(
    fp(
      async (instance) => {
        instance.decorate('ctx', ctx);
      },
      { name: 'context' },
    ),
  );
  app.addSchema(Problem);
  // The mobile app in the stores sends some POSTs with `Content-Type: application/json` and no
  // body (a 400 there would leave the session billing): an empty JSON body is `{}`, and the route's schema decides.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '') return done(null, {});
    return parseJson(req, body as string, done);
  });
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  await app.register(helmet, {
    // The /docs UI and the /ops page ship their own scripts; CSP is set per page there.
    contentSecurityPolicy: false,
    crossOriginEmbedderPolicy: false,
  });
  await app.register(rateLimitsPlugin);
  await app.register(errorsPlugin);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'sessiongate',
        version: '0.1.0',
        description: 'Session-gated telemedicine consultations: appointments, sessions, chat, billing.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _base, _frag, i) => String(json.$id ?? `def-${i}`) },
    // Success responses say what they are instead of "Default Response".
    transform: ({ schema, url }) => {
      const response = schema?.response as Record<string, Record<string, unknown>> | undefined;
      if (!response) return { schema, url };
      const described = Object.fromEntries(
        Object.entries(response).map(([status, r]) => [
          status,
          r['description'] ? r : { ...r, description: SUCCESS_DESCRIPTIONS[status] ?? 'Response' },
        ]),
      );
      return { schema: { ...schema, response: described }, url };
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(asyncApiRoute);
  await app.register(authPlugin);
  await app.register(observabilityPlugin);

  await app.register(usersRoutes);
  await app.register(appointmentsRoutes);
  await app.register(sessionsRoutes);
  await app.register(chatRoutes);
  await app.register(billingRoutes);
  await app.register(opsRoutes);
  // One WebSocket server for every socket route: `bearer` for /api/v2/ws, `no-compression` for the
  // original app's sockets (it offers that one sub-protocol and needs it echoed).
  await app.register(websocketSupport, { protocols: ['bearer', 'no-compression'] });
  await app.register(mediaRoutes);
  await app.register(realtimeGateway);
  // The original client contract at /api (src/compat/original): a translation layer over the
  // same services. sessiongate's own routes above live under /api/v2.
  await app.register(originalContract);

  return app;
}
