/**
 * Database faults under traffic, on a PostgreSQL server of the test's own: backends terminated
 * with pg_terminate_backend, then the server stopped and started again mid-run. Readiness must
 * go 503 and come back, requests fail fast with 503 SERVICE_UNAVAILABLE (never hang, never 500),
 * every accepted write is still there afterwards, and the worker carries on by itself.
 */
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config/env.js';
import { FlagService } from '../../src/config/flags.js';
import { closeContext, createContext, type AppContext } from '../../src/context.js';
import { signToken } from '../../src/lib/auth.js';
import { JOBS } from '../../src/modules/jobs/index.js';
import { startWorker, type Worker } from '../../src/modules/jobs/scheduler.js';
import { createUser, grantSubscription, upsertPlan } from '../../src/modules/users/service.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { isPostgres } from '../helpers/db.js';
import { PrivatePostgres, privatePostgresAvailable } from '../helpers/private-postgres.js';
import { freePort, waitForStatus } from '../helpers/process.js';

const enabled = isPostgres && privatePostgresAvailable();

describe.skipIf(!enabled)('database faults', () => {
  let server: PrivatePostgres;
  let ctx: AppContext;
  let app: App;
  let worker: Worker;
  let base: string;

  beforeAll(async () => {
    server = new PrivatePostgres(await freePort());
    server.start();
    const config = loadConfig({
      DATABASE_URL: server.url,
      JWT_SECRET: TEST_JWT_SECRET,
      DB_POOL_SIZE: '8',
      AUTO_START_INTERVAL_SECONDS: '1',
      RATE_LIMIT_CREATE_PER_MINUTE: '100000',
      RATE_LIMIT_WRITE_PER_MINUTE: '100000',
      MAX_PENDING_BOOKINGS: '1000',
      RATE_LIMIT_CHAT_BURST: '100000',
    });
    ctx = await createContext(config, { role: 'test', logger: pino({ level: 'silent' }), flags: new FlagService(() => ({})) });
    app = await buildApp(ctx);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    worker = startWorker(ctx, JOBS);
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    if (ctx) await closeContext(ctx);
    server?.destroy();
  });

  it('fails fast with 503 during the outage, recovers by itself, and loses no accepted write', async () => {
    const doctor = await createUser(ctx.db, { role: 'doctor', name: 'Dr Fault' });
    const patients = await Promise.all(Array.from({ length: 6 }, (_, i) => createUser(ctx.db, { role: 'patient', name: `P${i}` })));
    // Booking needs a usable credit.
    const plan = await upsertPlan(ctx.db, { name: 'faults', text_credits: 1, voice_credits: 0, video_credits: 0, validity_days: 30 });
    for (const p of patients)
      await grantSubscription(ctx.db, { user_id: p.id, plan_id: plan.id, payment_reference: `faults-${p.id}` }, new Date());
    const tokens = await Promise.all(patients.map((p) => signToken(TEST_JWT_SECRET, { sub: p.id, role: 'patient' })));

    const accepted: number[] = [];
    const statuses = new Map<number, number>();
    const problems: string[] = [];
    let slot = 0;
    let running = true;

    const client = async (token: string) => {
      while (running) {
        const at = new Date(Date.now() + 86_400_000 + ++slot * 60_000).toISOString();
        const started = Date.now();
        try {
          const res = await fetch(`${base}/api/v2/appointments`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ doctor_id: doctor.id, scheduled_at: at, appointment_type: 'text' }),
            signal: AbortSignal.timeout(15_000),
          });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const body = (await res.json()) as { data?: { id: number }; error_code?: string };
          if (res.status === 201) accepted.push(body.data!.id);
          else if (res.status === 503) expect(body.error_code).toBe('SERVICE_UNAVAILABLE');
          else if (res.status !== 401) problems.push(`unexpected ${res.status} ${JSON.stringify(body)}`);
        } catch (err) {
          problems.push(`request failed after ${Date.now() - started} ms: ${String(err)}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const traffic = Promise.all(tokens.map(client));

    await new Promise((r) => setTimeout(r, 800));
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = 'postgres' and pid <> pg_backend_pid()`);
    await admin.end().catch(() => {});
    await new Promise((r) => setTimeout(r, 800));

    server.stop('fast');
    expect(await waitForStatus(`${base}/health/ready`, 503, 10_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 1500));
    server.start();
    expect(await waitForStatus(`${base}/health/ready`, 200, 20_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    running = false;
    await traffic;

    expect(problems).toEqual([]);
    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);
    expect(accepted.length).toBeGreaterThan(0);
    const stored = await ctx.db.selectFrom('appointments').select('id').where('id', 'in', accepted).execute();
    expect(stored.length).toBe(accepted.length);

    // The worker carries on by itself: a due appointment made after the restart is converted.
    const due = await ctx.db
      .insertInto('appointments')
      .values({
        patient_id: patients[0]!.id,
        doctor_id: doctor.id,
        appointment_type: 'text',
        status: 'confirmed',
        scheduled_at: new Date(Date.now() - 60_000),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await expect
      .poll(
        async () =>
          (await ctx.db.selectFrom('appointments').select('session_id').where('id', '=', due.id).executeTakeFirstOrThrow()).session_id,
        {
          timeout: 20_000,
          interval: 250,
        },
      )
      .not.toBeNull();
  }, 120_000);
});
