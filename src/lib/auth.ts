/**
 * JWT bearer tokens (HS256 with JWT_SECRET, or a JWKS URL). The service verifies tokens; it
 * does not run a login flow. `sessiongate auth:token` mints tokens for local use.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Role } from '../db/types.js';

export interface TokenClaims {
  sub: number;
  role: Role;
}

export interface TokenVerifier {
  verify(token: string): Promise<TokenClaims | null>;
}

const ROLES: readonly Role[] = ['patient', 'doctor', 'admin'];

/**
 * The HS256 secret. On PGlite without JWT_SECRET a random one is generated into DATA_DIR once,
 * so `npm start` works with nothing configured; `warn` is told so it can be logged.
 */
export function resolveJwtSecret(
  cfg: { jwtSecret: string | null; databaseUrl: string | null; dataDir: string },
  warn: (msg: string) => void = () => {},
): string | null {
  if (cfg.jwtSecret) return cfg.jwtSecret;
  if (cfg.databaseUrl) return null;
  const file = join(cfg.dataDir, 'jwt-secret');
  if (!existsSync(file)) {
    mkdirSync(cfg.dataDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600 });
    warn(`JWT_SECRET is not set: generated a development secret in ${file}. Set JWT_SECRET in production.`);
  }
  return readFileSync(file, 'utf8').trim();
}

export function createVerifier(opts: { secret: string | null; jwksUrl: string | null }): TokenVerifier {
  const key: Uint8Array | JWTVerifyGetKey | null = opts.secret
    ? new TextEncoder().encode(opts.secret)
    : opts.jwksUrl
      ? createRemoteJWKSet(new URL(opts.jwksUrl))
      : null;
  if (!key) throw new Error('No JWT key: set JWT_SECRET or JWKS_URL');
  const algorithms = opts.secret ? ['HS256'] : ['RS256', 'ES256', 'EdDSA'];
  return {
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key as Uint8Array, { algorithms, requiredClaims: ['sub', 'exp'] });
        const sub = Number(payload.sub);
        const role = payload['role'];
        if (!Number.isSafeInteger(sub) || sub < 1 || !ROLES.includes(role as Role)) return null;
        return { sub, role: role as Role };
      } catch {
        return null;
      }
    },
  };
}

/** Parses `1h`, `30m`, `7d`, `3600` (seconds) into seconds. */
export function parseTtl(ttl: string): number | null {
  const m = /^(\d{1,7})([smhd]?)$/.exec(ttl.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return n > 0 ? n * unit : null;
}

export async function signToken(secret: string, claims: TokenClaims, ttlSeconds = 3600): Promise<string> {
  return new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(String(claims.sub))
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}
