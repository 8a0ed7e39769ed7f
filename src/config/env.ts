/**
 * Configuration: one schema, parsed once at boot from the environment (and `.env`), frozen.
 * Every invalid variable is reported in one error so an operator fixes them all in one go.
 * Feature flags are not here: they can change at run time (SIGHUP) — see `flags.ts`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseDotenv } from 'dotenv';
import { FLAG_NAMES, parseBooleanValue } from './flag-values.js';

export interface Config {
  port: number;
  host: string;
  databaseUrl: string | null;
  dataDir: string;
  jwtSecret: string | null;
  jwksUrl: string | null;
  /** Accepted `iss` values (JWT_ISSUER, comma-separated); null: not checked. Required with JWKS_URL. */
  jwtIssuer: string[] | null;
  /** Accepted `aud` values (JWT_AUDIENCE, comma-separated); null: not checked. Required with JWKS_URL. */
  jwtAudience: string[] | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Log bytes collected before a write (0: every line written at once); see `createLogger`. */
  logBufferBytes: number;
  runWorker: boolean;
  /** Port of the separate metrics/health listener (0: none). Default: 9464 for `worker`, 0 for `serve`. */
  metricsPort: number;
  metricsHost: string;
  dbPoolSize: number;
  textSessionResponseWindowSeconds: number;
  sessionJoinWindowMinutes: number;
  callRingTimeoutSeconds: number;
  autoStartMaxLatenessMinutes: number;
  autoStartMaxAttempts: number;
  autoStartIntervalSeconds: number;
  autoStartBatchSize: number;
  billingTickSeconds: number;
  payoutRateMwkMinor: number;
  payoutRateUsdMinor: number;
  shutdownTimeoutMs: number;
  /** Requests per minute per caller on routes that create things (bookings, sessions, users). */
  rateLimitCreatePerMinute: number;
  /** Refuse the original app's call sockets that carry no token (its store build sends none). */
  originalCallSocketRequireToken: boolean;
  /** Origin of absolute media URLs (`https://api.example.org`); unset: `https://` + the request's Host. */
  publicBaseUrl: string | null;
  /** An active text session with no message for this long ends `inactive`. */
  textSessionIdleMinutes: number;
  /** A connected call with both participants off the WebSocket this long ends `disconnected`. */
  callDisconnectGraceSeconds: number;
  /** A booked session ends `time_limit` this long after its booked end. */
  sessionOverrunMinutes: number;
  /** An instant session ends `time_limit` this long after it was created (and bills at most this time). */
  instantSessionMaxMinutes: number;
  /** A confirmed appointment never converted becomes `missed` this many days after its time. */
  staleAppointmentDays: number;
  /** Guard events, conversion records, delivered outbox rows, idempotency keys and job runs are pruned after this many days. */
  recordRetentionDays: number;
  /** Chat sends per user per window (session and legacy chat share it): a burst, and its window. */
  rateLimitChatBurst: number;
  rateLimitChatWindowSeconds: number;
  /** Other writes per user per minute: reactions, read marks, typing, ending, joining, billing calls. */
  rateLimitWritePerMinute: number;
  /** WebSocket handshakes per user per minute, across processes. */
  rateLimitWsConnectPerMinute: number;
  /** Open WebSocket connections per user, per API process. */
  wsMaxConnectionsPerUser: number;
  /** How often every connected user is re-read (the backstop of the revocation signal). */
  wsAccessRecheckSeconds: number;
  /** Future pending bookings a patient may hold at once. */
  maxPendingBookings: number;
  /** How far ahead a booking may be made. */
  bookingMaxDaysAhead: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Source = Record<string, string | undefined>;

/** Reads `.env` (if present) without touching process.env; the real environment wins over it. */
export function readDotenv(path = '.env'): Record<string, string> {
  if (!existsSync(path)) return {};
  return parseDotenv(readFileSync(path));
}

/** The environment as the service sees it: `.env` values under the real environment. */
export function effectiveEnv(env: Source = process.env, dotenvPath = '.env'): Source {
  return { ...readDotenv(dotenvPath), ...env };
}

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly src: Source) {}

  private raw(name: string): string | undefined {
    const v = this.src[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  string(name: string, fallback: string): string;
  string(name: string, fallback: null): string | null;
  string(name: string, fallback: string | null): string | null {
    return this.raw(name) ?? fallback;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.problems.push(`${name} must be a whole number from ${min} to ${max} (got "${v}")`);
      return fallback;
    }
    return Number(v);
  }

  bool(name: string, fallback: boolean): boolean {
    const v = parseBooleanValue(this.src[name]);
    if (v === 'invalid') {
      this.problems.push(`${name} must be one of true/false/1/0/yes/no/on/off (got "${this.src[name]}")`);
      return fallback;
    }
    return v ?? fallback;
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!allowed.includes(v as T)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')} (got "${v}")`);
      return fallback;
    }
    return v as T;
  }
}

/**
 * Parses the configuration. `defaults.runWorker` differs by process role: `npm start` runs the
 * worker beside the API, `sessiongate serve` does not unless RUN_WORKER says so.
 */
export function loadConfig(src: Source = effectiveEnv(), defaults: { runWorker?: boolean; metricsPort?: number } = {}): Config {
  const r = new Reader(src);
  const databaseUrl = r.string('DATABASE_URL', null);
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    r.problems.push('DATABASE_URL must start with postgres:// or postgresql://');
  }
  const jwtSecret = r.string('JWT_SECRET', null);
  if (jwtSecret !== null && jwtSecret.length < 32) {
    r.problems.push('JWT_SECRET must be at least 32 characters');
  }
  if (databaseUrl && !jwtSecret && !r.string('JWKS_URL', null)) {
    r.problems.push('JWT_SECRET (or JWKS_URL) is required when DATABASE_URL is set');
  }
  const list = (name: string): string[] | null => {
    const items = (r.string(name, null) ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    return items.length > 0 ? items : null;
  };
  const jwtIssuer = list('JWT_ISSUER');
  const jwtAudience = list('JWT_AUDIENCE');
  // A JWKS is usually an identity provider that signs tokens for many applications: without an
  // issuer and audience check, any token it ever issued for anything would be accepted here.
  if (!jwtSecret && r.string('JWKS_URL', null) && (!jwtIssuer || !jwtAudience)) {
    r.problems.push('JWT_ISSUER and JWT_AUDIENCE are required with JWKS_URL');
  }
  // Flags are validated here too, so a bad value stops the process at boot with its name.
  for (const name of FLAG_NAMES) r.bool(name, false);

  const config: Config = {
    port: r.int('PORT', 3000, 0, 65535),
    host: r.string('HOST', '127.0.0.1'),
    databaseUrl,
    dataDir: r.string('DATA_DIR', './data'),
    jwtSecret,
    jwksUrl: r.string('JWKS_URL', null),
    jwtIssuer,
    jwtAudience,
    logLevel: r.oneOf('LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    logBufferBytes: r.int('LOG_BUFFER_BYTES', 8192, 0, 1_048_576),
    runWorker: r.bool('RUN_WORKER', defaults.runWorker ?? false),
    metricsPort: r.int('METRICS_PORT', defaults.metricsPort ?? 0, 0, 65535),
    metricsHost: r.string('METRICS_HOST', r.string('HOST', '127.0.0.1')),
    dbPoolSize: r.int('DB_POOL_SIZE', 10, 1, 200),
    textSessionResponseWindowSeconds: r.int('TEXT_SESSION_RESPONSE_WINDOW_SECONDS', 300, 10, 86_400),
    sessionJoinWindowMinutes: r.int('SESSION_JOIN_WINDOW_MINUTES', 60, 1, 10_080),
    callRingTimeoutSeconds: r.int('CALL_RING_TIMEOUT_SECONDS', 90, 5, 3_600),
    autoStartMaxLatenessMinutes: r.int('AUTO_START_MAX_LATENESS_MINUTES', 1440, 1, 525_600),
    autoStartMaxAttempts: r.int('AUTO_START_MAX_ATTEMPTS', 5, 1, 100),
    autoStartIntervalSeconds: r.int('AUTO_START_INTERVAL_SECONDS', 30, 1, 3_600),
    autoStartBatchSize: r.int('AUTO_START_BATCH_SIZE', 2000, 1, 10_000),
    billingTickSeconds: r.int('BILLING_TICK_SECONDS', 30, 1, 60),
    payoutRateMwkMinor: r.int('PAYOUT_RATE_MWK_MINOR', 350_000, 0, 1_000_000_000),
    payoutRateUsdMinor: r.int('PAYOUT_RATE_USD_MINOR', 300, 0, 1_000_000_000),
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 10_000, 100, 120_000),
    rateLimitCreatePerMinute: r.int('RATE_LIMIT_CREATE_PER_MINUTE', 60, 1, 1_000_000),
    originalCallSocketRequireToken: r.bool('ORIGINAL_CALL_SOCKET_REQUIRE_TOKEN', false),
    publicBaseUrl: r.string('PUBLIC_BASE_URL', null),
    textSessionIdleMinutes: r.int('TEXT_SESSION_IDLE_MINUTES', 15, 1, 1_440),
    callDisconnectGraceSeconds: r.int('CALL_DISCONNECT_GRACE_SECONDS', 60, 5, 3_600),
    sessionOverrunMinutes: r.int('SESSION_OVERRUN_MINUTES', 10, 0, 1_440),
    instantSessionMaxMinutes: r.int('INSTANT_SESSION_MAX_MINUTES', 60, 1, 1_440),
    staleAppointmentDays: r.int('STALE_APPOINTMENT_DAYS', 7, 1, 365),
    // At least 8 days: rollout:status and the monitor read 24 h and 7 d windows, which must stay whole.
    recordRetentionDays: r.int('RECORD_RETENTION_DAYS', 30, 8, 3_650),
    rateLimitChatBurst: r.int('RATE_LIMIT_CHAT_BURST', 20, 1, 1_000_000),
    rateLimitChatWindowSeconds: r.int('RATE_LIMIT_CHAT_WINDOW_SECONDS', 20, 1, 3_600),
    rateLimitWritePerMinute: r.int('RATE_LIMIT_WRITE_PER_MINUTE', 120, 1, 1_000_000),
    rateLimitWsConnectPerMinute: r.int('RATE_LIMIT_WS_CONNECT_PER_MINUTE', 30, 1, 1_000_000),
    wsMaxConnectionsPerUser: r.int('WS_MAX_CONNECTIONS_PER_USER', 10, 1, 10_000),
    wsAccessRecheckSeconds: r.int('WS_ACCESS_RECHECK_SECONDS', 10, 1, 3_600),
    maxPendingBookings: r.int('MAX_PENDING_BOOKINGS', 3, 1, 1_000),
    bookingMaxDaysAhead: r.int('BOOKING_MAX_DAYS_AHEAD', 365, 1, 3_650),
  };
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return Object.freeze(config);
}
