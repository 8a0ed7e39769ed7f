/**
 * Authentication: `Authorization: Bearer <JWT>`. The user is loaded from the database on every
 * authenticated request, so a deleted user or a changed role takes effect at once.
 * `app.auth(roles?)` is the route-level gate: 401 without a valid token, 403 for a wrong role.
 */
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { createVerifier, type TokenVerifier } from '../lib/auth.js';
import { DomainError, forbidden, unauthenticated } from '../lib/errors.js';
import type { Role } from '../db/types.js';

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
    const verifier = createVerifier({ secret: app.ctx.jwtSecret, jwksUrl: app.ctx.config.jwksUrl });
    app.decorate('verifier', verifier);
    app.decorateRequest('user', null);

    app.decorate('authenticateToken', async (token: string): Promise<AuthUser | null> => {
      const claims = await verifier.verify(token);
      if (!claims) return null;
      const user = await app.ctx.db
        .selectFrom('users')
        .select(['id', 'role', 'name', 'country', 'timezone'])
        .where('id', '=', claims.sub)
        .executeTakeFirst();
      return user ?? null;
    });

    app.decorate('auth', (roles?: Role[]): preHandlerAsyncHookHandler => {
      return async (req) => {
        const token = bearerToken(req);
        if (!token) throw unauthenticated('Missing bearer token');
        const user = await app.authenticateToken(token);
        if (!user) throw unauthenticated('Invalid or expired token');
        req.user = user;
        if (roles && !roles.includes(user.role)) throw forbidden(`This action requires role ${roles.join(' or ')}`);
      };
    });
  },
  { name: 'auth', dependencies: ['context'] },
);

/** The authenticated user of a route behind `app.auth()`. */
export function currentUser(req: FastifyRequest): AuthUser {
  if (!req.user) throw new DomainError('UNAUTHENTICATED', 'Authentication required');
  return req.user;
}
