/**
 * Authentication: `Authorization: Bearer <JWT>`. The user is loaded from the database on every
 * authenticated request (concurrent requests share the statement, nothing is cached), so a deleted user or a changed role takes effect at once. The token
 * proves who the caller is; the stored role says what they may do (a token without a `role`
 * claim, as the existing Laravel login issues, authenticates the same way).
 * `app.auth(roles?)` is the route-level gate: 401 without a valid token, 403 for a wrong role.
 * It is the one way a request is authenticated (the WebSocket handshakes call
 * `authenticateToken`, its core): routes receive the loaded user in `req.user`.
 */
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { createVerifier, type TokenVerifier } from '../lib/auth.js';
import { rememberingVerifier } from '../lib/verified-tokens.js';
import { DomainError, forbidden, unauthenticated } from '../lib/errors.js';
import { batchedStatement } from '../db/batch.js';
import { runPrepared, type PreparedStatement } from '../db/index.js';
import type { Role } from '../db/types.js';

const AUTH_GATE = Symbol('sessiongate.auth-gate');

/**
 * The users verified tokens name, if they still exist and are active: every request asks, and
 * the requests of one event-loop turn share the statement (src/db/batch.ts).
 */
const ACTIVE_USERS: PreparedStatement = {
  name: 'auth_active_users_v1',
  text: `select id, role, name, country, timezone from users where id = any($1::bigint[]) and deactivated_at is null`,
};

export interface AuthUser {
  id: number;
  role: Role;
  name: string;
  country: string | null;
  timezone: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    user: AuthUser | null;
  }
  interface FastifyInstance {
    auth(roles?: Role[]): preHandlerAsyncHookHandler;
    verifier: TokenVerifier;
    /** Resolves a raw JWT to a user (WebSocket handshakes use it too). */
    authenticateToken(token: string): Promise<AuthUser | null>;
  }
}

export function bearerToken(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const m = /^Bearer\s+([A-Za-z0-9._~+/-]+=*)$/i.exec(h.trim());
  return m?.[1] ?? null;
}

export default fp(
  async function auth(app: FastifyInstance) {
    const { jwksUrl, jwtIssuer, jwtAudience } = app.ctx.config;
    const verifier = rememberingVerifier(createVerifier({ secret: app.ctx.jwtSecret, jwksUrl, issuer: jwtIssuer, audience: jwtAudience }));
    app.decorate('verifier', verifier);
    app.decorateRequest('user', null);
    const activeUsers = batchedStatement<number, AuthUser | null>(async (ids) => {
      const rows = await runPrepared<AuthUser>(app.ctx.database, ACTIVE_USERS, [[...new Set(ids)]]);
      const byId = new Map(rows.map((u) => [Number(u.id), u]));
      return ids.map((id) => byId.get(id) ?? null);
    });

    app.decorate('authenticateToken', async (token: string): Promise<AuthUser | null> => {
      const claims = await verifier.verify(token);
      if (!claims) return null;
      return activeUsers.load(claims.sub);
    });

    // Authentication runs first, before the body is parsed and validated: a caller without a
    // valid token learns nothing about what a route accepts (401, not 400). Routes declare
    // `preHandler: app.auth()`; this moves those handlers to the route's onRequest stage.
    app.addHook('onRoute', (route) => {
      const pre = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler];
      const gates = pre.filter((h) => AUTH_GATE in h);
      if (gates.length === 0) return;
      const on = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
      route.preHandler = pre.filter((h) => !(AUTH_GATE in h));
      route.onRequest = [...gates, ...on] as typeof route.onRequest;
    });

    app.decorate('auth', (roles?: Role[]): preHandlerAsyncHookHandler => {
      const gate = async (req: FastifyRequest) => {
        const token = bearerToken(req);
        if (!token) throw unauthenticated('Missing bearer token');
        const user = await app.authenticateToken(token);
        if (!user) throw unauthenticated('Invalid or expired token');
        req.user = user;
        if (roles && !roles.includes(user.role)) throw forbidden(`This action requires role ${roles.join(' or ')}`);
      };
      return Object.assign(gate, { [AUTH_GATE]: true }) as preHandlerAsyncHookHandler;
    });
  },
  { name: 'auth', dependencies: ['context'] },
);

/** The authenticated user of a route behind `app.auth()`. */
export function currentUser(req: FastifyRequest): AuthUser {
  if (!req.user) throw new DomainError('UNAUTHENTICATED', 'Authentication required');
  return req.user;
}
