/**
 * Configuration: one TypeBox schema of the environment (and `.env`), parsed once at boot and
 * frozen. Every invalid variable is reported in one error so an operator fixes them all in one
 * go. Feature flags are not here: they can change at run time (SIGHUP) — see `flags.ts`; their
 * values are checked here too, so a bad one stops the process at boot with its name.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseDotenv } from 'dotenv';
import { parseBooleanValue } from './flag-values.js';
import { flagsFromEnv } from './flags.js';

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

const int = (min: number, max: number, fallback: number) => Type.Integer({ minimum: min, maximum: max, default: fallback });
const optionalInt = (min: number, max: number) => Type.Optional(Type.Integer({ minimum: min, maximum: max }));
const text = (fallback: string) => Type.String({ default: fallback });
const optionalText = (options: { pattern?: string; minLength?: number; errorMessage?: string } = {}) => Type.Optional(Type.String(options));
const bool = (fallback: boolean) => Type.Boolean({ default: fallback });
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Every variable, its type, bounds and default (README's configuration table documents them). */
export const EnvSchema = Type.Object({
  PORT: int(0, 65535, 3000),
  HOST: text('127.0.0.1'),
  DATABASE_URL: optionalText({ pattern: '^postgres(ql)?://', errorMessage: 'must start with postgres:// or postgresql://' }),
  DATA_DIR: text('./data'),
  JWT_SECRET: optionalText({ minLength: 32, errorMessage: 'must be at least 32 characters' }),
  JWKS_URL: optionalText(),
  JWT_ISSUER: optionalText(),
  JWT_AUDIENCE: optionalText(),
  LOG_LEVEL: Type.Union(
    LOG_LEVELS.map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
  LOG_BUFFER_BYTES: int(0, 1_048_576, 8192),
  // The process role decides these two defaults (see loadConfig).
  RUN_WORKER: Type.Optional(Type.Boolean()),
  METRICS_PORT: optionalInt(0, 65535),
  METRICS_HOST: optionalText(),
  DB_POOL_SIZE: int(1, 200, 10),
  TEXT_SESSION_RESPONSE_WINDOW_SECONDS: int(10, 86_400, 300),
  SESSION_JOIN_WINDOW_MINUTES: int(1, 10_080, 60),
  CALL_RING_TIMEOUT_SECONDS: int(5, 3_600, 90),
  AUTO_START_MAX_LATENESS_MINUTES: int(1, 525_600, 1440),
  AUTO_START_MAX_ATTEMPTS: int(1, 100, 5),
  AUTO_START_INTERVAL_SECONDS: int(1, 3_600, 30),
  AUTO_START_BATCH_SIZE: int(1, 10_000, 2000),
  BILLING_TICK_SECONDS: int(1, 60, 30),
  PAYOUT_RATE_MWK_MINOR: int(0, 1_000_000_000, 350_000),
  PAYOUT_RATE_USD_MINOR: int(0, 1_000_000_000, 300),
  SHUTDOWN_TIMEOUT_MS: int(100, 120_000, 10_000),
  RATE_LIMIT_CREATE_PER_MINUTE: int(1, 1_000_000, 60),
  ORIGINAL_CALL_SOCKET_REQUIRE_TOKEN: bool(false),
  PUBLIC_BASE_URL: optionalText(),
  TEXT_SESSION_IDLE_MINUTES: int(1, 1_440, 15),
  CALL_DISCONNECT_GRACE_SECONDS: int(5, 3_600, 60),
  SESSION_OVERRUN_MINUTES: int(0, 1_440, 10),
  INSTANT_SESSION_MAX_MINUTES: int(1, 1_440, 60),
  STALE_APPOINTMENT_DAYS: int(1, 365, 7),
  // At least 8 days: rollout:status and the monitor read 24 h and 7 d windows, which must stay whole.
  RECORD_RETENTION_DAYS: int(8, 3_650, 30),
  RATE_LIMIT_CHAT_BURST: int(1, 1_000_000, 20),
  RATE_LIMIT_CHAT_WINDOW_SECONDS: int(1, 3_600, 20),
  RATE_LIMIT_WRITE_PER_MINUTE: int(1, 1_000_000, 120),
  RATE_LIMIT_WS_CONNECT_PER_MINUTE: int(1, 1_000_000, 30),
  WS_MAX_CONNECTIONS_PER_USER: int(1, 10_000, 10),
  WS_ACCESS_RECHECK_SECONDS: int(1, 3_600, 10),
  MAX_PENDING_BOOKINGS: int(1, 1_000, 3),
  BOOKING_MAX_DAYS_AHEAD: int(1, 3_650, 365),
});
export type Env = Static<typeof EnvSchema>;

/**
 * The environment's strings as the schema's values: trimmed, blank as unset, whole numbers
 * (digits only: `1e3`, `+5`, `5.0` stay strings and fail) and booleans (true/false/1/0/yes/no/
 * on/off) converted; anything else is left as it is for the schema to refuse.
 */
function typed(src: Source): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(EnvSchema.properties) as [string, TSchema][]) {
    const raw = src[name]?.trim();
    if (raw === undefined || raw === '') continue;
    if (schema.type === 'integer') out[name] = /^\d+$/.test(raw) ? Number(raw) : raw;
    else if (schema.type === 'boolean') out[name] = parseBooleanValue(raw) ?? raw;
    else out[name] = raw;
  }
  return out;
}

/** The operator's message for a variable the schema refuses, from its schema. */
function problem(name: string, schema: TSchema, src: Source): string {
  const got = `(got "${src[name]?.trim() ?? ''}")`;
  if (typeof schema['errorMessage'] === 'string') return `${name} ${schema['errorMessage']}`;
  if (schema.type === 'integer') return `${name} must be a whole number from ${schema['minimum']} to ${schema['maximum']} ${got}`;
  if (schema.type === 'boolean') return `${name} must be one of true/false/1/0/yes/no/on/off ${got}`;
  if (Array.isArray(schema['anyOf'])) {
    return `${name} must be one of ${(schema['anyOf'] as TSchema[]).map((s) => String(s['const'])).join(', ')} ${got}`;
  }
  return `${name} is invalid ${got}`;
}

const list = (v: string | undefined): string[] | null => {
  const items = (v ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  return items.length > 0 ? items : null;
};

/**
 * Parses the configuration. `defaults.runWorker` differs by process role: `npm start` runs the
 * worker beside the API, `sessiongate serve` does not unless RUN_WORKER says so.
 */
export function loadConfig(src: Source = effectiveEnv(), defaults: { runWorker?: boolean; metricsPort?: number } = {}): Config {
  const value = Value.Default(EnvSchema, typed(src)) as Record<string, unknown>;
  const problems: string[] = [];
  const refused = new Set<string>();
  for (const e of Value.Errors(EnvSchema, value)) {
    const name = e.path.slice(1).split('/')[0]!;
    if (refused.has(name)) continue;
    refused.add(name);
    problems.push(problem(name, EnvSchema.properties[name as keyof Env] as TSchema, src));
  }
  problems.push(...flagsFromEnv(src).problems);
  const env = value as Env;
  const jwtSecret = refused.has('JWT_SECRET') ? null : (env.JWT_SECRET ?? null);
  const jwtIssuer = list(env.JWT_ISSUER);
  const jwtAudience = list(env.JWT_AUDIENCE);
  if (env.DATABASE_URL && !env.JWT_SECRET && !env.JWKS_URL) problems.push('JWT_SECRET (or JWKS_URL) is required when DATABASE_URL is set');
  // A JWKS is usually an identity provider that signs tokens for many applications: without an
  // issuer and audience check, any token it ever issued for anything would be accepted here.
  if (!env.JWT_SECRET && env.JWKS_URL && (!jwtIssuer || !jwtAudience))
    problems.push('JWT_ISSUER and JWT_AUDIENCE are required with JWKS_URL');
  if (problems.length > 0) throw new ConfigError(problems);

  const config: Config = {
    port: env.PORT,
    host: env.HOST,
    databaseUrl: env.DATABASE_URL ?? null,
    dataDir: env.DATA_DIR,
    jwtSecret,
    jwksUrl: env.JWKS_URL ?? null,
    jwtIssuer,
    jwtAudience,
    logLevel: env.LOG_LEVEL,
    logBufferBytes: env.LOG_BUFFER_BYTES,
    runWorker: env.RUN_WORKER ?? defaults.runWorker ?? false,
    metricsPort: env.METRICS_PORT ?? defaults.metricsPort ?? 0,
    metricsHost: env.METRICS_HOST ?? env.HOST,
    dbPoolSize: env.DB_POOL_SIZE,
    textSessionResponseWindowSeconds: env.TEXT_SESSION_RESPONSE_WINDOW_SECONDS,
    sessionJoinWindowMinutes: env.SESSION_JOIN_WINDOW_MINUTES,
    callRingTimeoutSeconds: env.CALL_RING_TIMEOUT_SECONDS,
    autoStartMaxLatenessMinutes: env.AUTO_START_MAX_LATENESS_MINUTES,
    autoStartMaxAttempts: env.AUTO_START_MAX_ATTEMPTS,
    autoStartIntervalSeconds: env.AUTO_START_INTERVAL_SECONDS,
    autoStartBatchSize: env.AUTO_START_BATCH_SIZE,
    billingTickSeconds: env.BILLING_TICK_SECONDS,
    payoutRateMwkMinor: env.PAYOUT_RATE_MWK_MINOR,
    payoutRateUsdMinor: env.PAYOUT_RATE_USD_MINOR,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    rateLimitCreatePerMinute: env.RATE_LIMIT_CREATE_PER_MINUTE,
    originalCallSocketRequireToken: env.ORIGINAL_CALL_SOCKET_REQUIRE_TOKEN,
    publicBaseUrl: env.PUBLIC_BASE_URL ?? null,
    textSessionIdleMinutes: env.TEXT_SESSION_IDLE_MINUTES,
    callDisconnectGraceSeconds: env.CALL_DISCONNECT_GRACE_SECONDS,
    sessionOverrunMinutes: env.SESSION_OVERRUN_MINUTES,
    instantSessionMaxMinutes: env.INSTANT_SESSION_MAX_MINUTES,
    staleAppointmentDays: env.STALE_APPOINTMENT_DAYS,
    recordRetentionDays: env.RECORD_RETENTION_DAYS,
    rateLimitChatBurst: env.RATE_LIMIT_CHAT_BURST,
    rateLimitChatWindowSeconds: env.RATE_LIMIT_CHAT_WINDOW_SECONDS,
    rateLimitWritePerMinute: env.RATE_LIMIT_WRITE_PER_MINUTE,
    rateLimitWsConnectPerMinute: env.RATE_LIMIT_WS_CONNECT_PER_MINUTE,
    wsMaxConnectionsPerUser: env.WS_MAX_CONNECTIONS_PER_USER,
    wsAccessRecheckSeconds: env.WS_ACCESS_RECHECK_SECONDS,
    maxPendingBookings: env.MAX_PENDING_BOOKINGS,
    bookingMaxDaysAhead: env.BOOKING_MAX_DAYS_AHEAD,
  };
  return Object.freeze(config);
}
