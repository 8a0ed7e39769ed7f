/**
 * The integration-test harness: a real database (cloned template), the real app driven through
 * `inject`, and fixture builders (`t.newPatient()`, `t.newAppointment()` …). No mocks.
 */
import pino from 'pino';
import { buildApp, type App } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/env.js';
import { FlagService } from '../../src/config/flags.js';
import type { FlagSet } from '../../src/config/flag-values.js';
import { closeContext, createContext, type AppContext } from '../../src/context.js';
import type { Appointment, AppointmentStatus, Role, User } from '../../src/db/types.js';
import { signToken } from '../../src/lib/auth.js';
import { loggerOptions } from '../../src/lib/logger.js';
import { UNDOCUMENTED_ERROR_CODE } from '../../src/plugins/errors.js';
import { createUser, grantSubscription, upsertPlan } from '../../src/modules/users/service.js';
import { cloneTestDatabase, type TestDatabase } from './db.js';

export const TEST_JWT_SECRET = 'test-secret-test-secret-test-secret-0123456789';

export interface TestHarness {
  app: App;
  ctx: AppContext;
  config: Config;
  database: TestDatabase;
  flags: FlagService;
  /** Log lines the app wrote (JSON objects), for asserting on guard log messages. */
  logs: Record<string, unknown>[];
  token(user: Pick<User, 'id' | 'role'>, ttlSeconds?: number): Promise<string>;
  auth(user: Pick<User, 'id' | 'role'>): Promise<{ authorization: string }>;
  newUser(role: Role, overrides?: Partial<{ name: string; country: string | null; timezone: string }>): Promise<User>;
  newPatient(overrides?: Partial<{ name: string; country: string | null; timezone: string }>): Promise<User>;
  newDoctor(overrides?: Partial<{ name: string; country: string | null; timezone: string }>): Promise<User>;
  newAdmin(): Promise<User>;
  /** Inserts an appointment directly (any status/time), default: confirmed, due one minute ago. */
  newAppointment(input: {
    patient?: User;
    doctor?: User;
    status?: AppointmentStatus;
    scheduled_at?: Date;
    appointment_type?: string;
  }): Promise<Appointment & { patient: User; doctor: User }>;
  /** Grants credits to a patient: a plan with the given credits, valid `days`. */
  giveCredits(patient: User, credits: Partial<Record<'text' | 'voice' | 'video', number>>, days?: number): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  flags?: Partial<FlagSet>;
  env?: Record<string, string>;
  now?: () => Date;
}

let seq = 0;

export async function createHarness(opts: HarnessOptions = {}): Promise<TestHarness> {
  const database = await cloneTestDatabase();
  const env: Record<string, string | undefined> = {
    JWT_SECRET: TEST_JWT_SECRET,
    DATA_DIR: database.dataDir || '/nonexistent',
    DB_POOL_SIZE: '20',
    // Tests send far faster than a person types: the limits are tested where a test sets them.
    RATE_LIMIT_CHAT_BURST: '1000000',
    RATE_LIMIT_WRITE_PER_MINUTE: '1000000',
    RATE_LIMIT_WS_CONNECT_PER_MINUTE: '1000000',
    WS_MAX_CONNECTIONS_PER_USER: '10000',
    ...opts.env,
  };
  if (database.databaseUrl) env['DATABASE_URL'] = database.databaseUrl;
  const config = loadConfig(env);
  const flagEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.flags ?? {})) flagEnv[k] = String(v);
  const flags = new FlagService(() => flagEnv);
  const logs: Record<string, unknown>[] = [];
  const logger = pino(loggerOptions('info', 'test'), {
    write(line: string) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        /* not JSON */
      }
    },
  });
  const ctx = await createContext(config, { role: 'test', logger, flags, migrate: false, now: opts.now });
  const app = await buildApp(ctx);
  await app.ready();

  const token = (user: Pick<User, 'id' | 'role'>, ttl = 3600) => signToken(TEST_JWT_SECRET, { sub: user.id, role: user.role }, ttl);
  const newUser: TestHarness['newUser'] = (role, o = {}) =>
    createUser(ctx.db, { role, name: o.name ?? `${role} ${++seq}`, country: o.country ?? null, timezone: o.timezone });

  const h: TestHarness = {
    app,
    ctx,
    config,
    database,
    flags,
    logs,
    token,
    auth: async (user) => ({ authorization: `Bearer ${await token(user)}` }),
    newUser,
    newPatient: (o) => newUser('patient', o),
    newDoctor: (o) => newUser('doctor', o),
    newAdmin: () => newUser('admin'),
    async newAppointment(input) {
      const patient = input.patient ?? (await h.newPatient());
      const doctor = input.doctor ?? (await h.newDoctor());
      const appt = await ctx.db
        .insertInto('appointments')
        .values({
          patient_id: patient.id,
          doctor_id: doctor.id,
          appointment_type: input.appointment_type ?? 'text',
          status: input.status ?? 'confirmed',
          scheduled_at: input.scheduled_at ?? new Date(Date.now() - 60_000),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      return { ...appt, patient, doctor };
    },
    async giveCredits(patient, credits, days = 30) {
      const plan = await upsertPlan(ctx.db, {
        name: `test-plan-${++seq}`,
        text_credits: credits.text ?? 0,
        voice_credits: credits.voice ?? 0,
        video_credits: credits.video ?? 0,
        validity_days: days,
      });
      await grantSubscription(
        ctx.db,
        { user_id: patient.id, plan_id: plan.id, payment_reference: `test-ref-${++seq}-${patient.id}` },
        new Date(),
      );
    },
    async close() {
      await app.close();
      await closeContext(ctx);
      await database.drop();
      // A route answered an error_code its API document does not list: the document is wrong.
      const undocumented = logs
        .filter((l) => l['msg'] === UNDOCUMENTED_ERROR_CODE)
        .map((l) => `${l['method']} ${l['route']} → ${l['error_code']}`);
      if (undocumented.length > 0)
        throw new Error(`Error codes missing from the API document:\n  ${[...new Set(undocumented)].join('\n  ')}`);
    },
  };
  return h;
}
