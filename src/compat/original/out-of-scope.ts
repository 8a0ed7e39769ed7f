/**
 * Routes the app calls that sessiongate does not serve, and the calls that never
 * existed on the old backend either: a fast 404 problem document — no token check, no
 * database — whose `message` tells the person what happened (the app shows it). Behind the
 * reverse proxy of docs/migration.md the platform paths go to the platform's main backend and never
 * reach sessiongate; these answers are for a proxy that routes too much, and for sessiongate
 * running alone. Any other unknown `/api` path gets the generic 404 problem.
 *
 * They are hidden from the OpenAPI document: registered for every method, they would outnumber
 * the routes sessiongate serves; docs/decisions.md lists them.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { problems } from '../../lib/schemas.js';
import { sendProblem } from '../../plugins/errors.js';
import { original } from './shapes.js';

const MAIN = 'is handled by the platform’s main service, not by the consultation service';

/** Out of the consultation domain: served by the platform's main backend. */
const PLATFORM: { area: string; message: string; paths: string[] }[] = [
  {
    area: 'accounts',
    message: `Signing in, registration and your profile ${MAIN}. Please update the app or try again later.`,
    paths: [
      '/api/login',
      '/api/register',
      '/api/auth',
      '/api/auth/*',
      '/api/google-login',
      '/api/oauth/*',
      '/api/refresh',
      '/api/logout',
      '/api/user',
      '/api/user/*',
      '/api/profile',
      '/api/change-password',
      '/api/upload/profile-picture',
      '/api/upload/profile-picture-public',
      '/api/upload/id-document',
    ],
  },
  {
    area: 'payments',
    message: `Payments and plans are handled by the platform’s main service, not by the consultation service. Your credits are not affected.`,
    paths: ['/api/payments/*', '/api/plans'],
  },
  {
    area: 'assistant',
    message: `The health assistant ${MAIN}.`,
    paths: ['/api/chatbot/*'],
  },
  {
    area: 'notifications',
    message: `Notification settings and the notification inbox are handled by the platform’s main service, not by the consultation service.`,
    paths: ['/api/notifications', '/api/notifications/*'],
  },
  {
    area: 'administration',
    message: `Administration ${MAIN}.`,
    paths: ['/api/admin/*'],
  },
  {
    area: 'doctors and reviews',
    message: `Doctor profiles, reviews and ratings are handled by the platform’s main service, not by the consultation service.`,
    paths: [
      '/api/doctors/active',
      '/api/doctors/:id',
      '/api/doctors/:id/reviews',
      '/api/reviews',
      '/api/reviews/*',
      '/api/doctor-ratings/*',
      '/api/appointments/statistics',
      '/api/appointments/statistics/*',
      '/api/encryption/*',
      '/api/app/version-check',
      '/api/health',
    ],
  },
];

/** Called by the app but never routed on the old backend either. */
const NEVER_EXISTED: { method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'ALL'; path: string }[] = [
  { method: 'ALL', path: '/api/text-sessions/active' },
  { method: 'GET', path: '/api/text-sessions/:id/status' },
  { method: 'POST', path: '/api/text-appointments/:id/end-session' },
  { method: 'ALL', path: '/api/call-sessions/extend' },
  { method: 'ALL', path: '/api/api/*' },
  { method: 'ALL', path: '/api/appointments/:id/cancel' },
  { method: 'ALL', path: '/api/text-sessions/patient/*' },
  { method: 'ALL', path: '/api/text-sessions/doctor/*' },
  { method: 'GET', path: '/api/chat/NaN/info' },
];

const NEVER_MESSAGE = 'This action is not available. Nothing was changed; please go back and try again from the previous screen.';

export default async function outOfScopeRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const response = problems('NOT_FOUND');

  for (const group of PLATFORM) {
    for (const path of group.paths) {
      app.all(
        path,
        { schema: { ...original(`Not served here (${group.area}): the platform’s main backend serves it`), response, hide: true } },
        (req, reply) =>
          sendProblem(reply, 'NOT_FOUND', group.message, { served_by: 'platform', area: group.area, path: req.url.split('?')[0] }),
      );
    }
  }

  for (const { method, path } of NEVER_EXISTED) {
    const handler = { schema: { ...original('Never existed: the app calls it, the old backend never routed it'), response, hide: true } };
    const answer = (url: string) => ({ served_by: 'none', path: url.split('?')[0] });
    if (method === 'ALL') app.all(path, handler, (req, reply) => sendProblem(reply, 'NOT_FOUND', NEVER_MESSAGE, answer(req.url)));
    else
      app.route({
        method,
        url: path,
        ...handler,
        handler: (req, reply) => sendProblem(reply, 'NOT_FOUND', NEVER_MESSAGE, answer(req.url)),
      });
  }
}
