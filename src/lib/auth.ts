/**
 * JWT bearer tokens (HS256 with JWT_SECRET, or a JWKS URL). The service verifies tokens; it
 * does not run a login flow (the existing backend's login issues them, see docs/migration.md). `sessiongate auth:token` mints tokens for local use.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Role } from '../db/types.js';

export interface TokenClaims {
  sub: number;
  /**
   * The role the token names, when it names one (sessiongate's `role`; tokens of the existing
   * Laravel login carry none). Informational: the stored user's role is what authorizes.
   */
  role: Role | null;
}

export interface TokenVerifier {
  verify(token: string): Promise<TokenClaims | null>;
}

const ROLES: readonly Role[] = ['patient', 'doctor', 'admin'];

/** Clock skew allowed on `nbf` and `iat` (an issuer's clock ahead of ours); `exp` is strict. */
export const CLOCK_TOLERANCE_SECONDS = 30;

/**
 * The HS256 secret. On PGlite without JWT_SECRET (and without JWKS_URL) a random one is generated
 * into DATA_DIR once, so `npm start` works with nothing configured; `warn` is told so it can be logged.
 */
export function resolveJwtSecret(
  cfg: { jwtSecret: string | null; jwksUrl?: string | null; databaseUrl: string | null; dataDir: string },
  warn: (msg: string) => void = () => {},
): string | null {
  if (cfg.jwtSecret) return cfg.jwtSecret;
  if (cfg.databaseUrl || cfg.jwksUrl) return null;
  const file = join(cfg.dataDir, 'jwt-secret');
  if (!existsSync(file)) {
    mkdirSync(cfg.dataDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600 });
    warn(`JWT_SECRET is not set: generated a development secret in ${file}. Set JWT_SECRET in production.`);
  }
  return readFileSync(file, 'utf8').trim();
}

/**
 * A user id as a token may carry it: a JSON integer, or its canonical decimal string (`"4"`).
 * Anything `Number()` would also read as 4 — `"0x4"`, `"4e0"`, `" 4 "`, `"4.0"`, `"04"` — is
 * refused, so one user has exactly one spelling.
 */
export function parseSubject(sub: unknown): number | null {
  if (typeof sub === 'number') return Number.isSafeInteger(sub) && sub >= 1 ? sub : null;
  if (typeof sub !== 'string' || !/^[1-9][0-9]{0,15}$/.test(sub)) return null;
  const n = Number(sub);
  return Number.isSafeInteger(n) ? n : null;
}

export interface VerifierOptions {
  secret: string | null;
  jwksUrl: string | null;
  /** Accepted issuers; null: any (HS256 only — JWKS mode requires them, see the env schema). */
  issuer?: string[] | null;
  audience?: string[] | null;
}

/**
 * Verifies sessiongate's own tokens and those of the existing Laravel login (tymon/jwt-auth:
 * HS256, `sub` the user id as a string, `iss` the login URL, `iat`, `nbf`, `exp`, `jti`, `prv`,
 * `user_type`, no `role`). `exp` is required; `nbf` and `iat` are honoured when present.
 */
export function createVerifier(opts: VerifierOptions): TokenVerifier {
  const key: Uint8Array | JWTVerifyGetKey | null = opts.secret
    ? new TextEncoder().encode(opts.secret)
    : opts.jwksUrl
      ? createRemoteJWKSet(new URL(opts.jwksUrl))
      : null;
  if (!key) throw new Error('No JWT key: set JWT_SECRET or JWKS_URL');
  const algorithms = opts.secret ? ['HS256'] : ['RS256', 'ES256', 'EdDSA'];
  const checks = {
    algorithms,
    requiredClaims: ['sub', 'exp'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
    ...(opts.audience ? { audience: opts.audience } : {}),
  };
  return {
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key as Uint8Array, checks);
        // jose checks `iat` only against a maximum age; a token issued in the future is refused here.
        if (payload.iat !== undefined && payload.iat > Date.now() / 1000 + CLOCK_TOLERANCE_SECONDS) return null;
        if (typeof payload.exp !== 'number' || payload.exp <= Date.now() / 1000) return null;
        const sub = parseSubject(payload.sub as unknown);
        const role = payload['role'];
        if (sub === null) return null;
        if (role !== undefined && !ROLES.includes(role as Role)) return null;
        return { sub, role: (role as Role | undefined) ?? null };
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

export async function signToken(secret: string, claims: { sub: number; role: Role }, ttlSeconds = 3600): Promise<string> {
  return new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(String(claims.sub))
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}
