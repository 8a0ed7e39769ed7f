/**
 * A scripted day on a multi-process deployment, started the way an operator starts it: two
 * `sessiongate serve` processes and three `sessiongate worker` processes on one PostgreSQL.
 * 500 patients and 50 doctors; 2,000 appointments booked, confirmed, auto-started, chatted in
 * over both API processes and WebSockets, ended and billed — in four waves (a patient has one
 * live session at a time). In the middle one worker is SIGKILLed and one API process restarted.
 * Afterwards every due appointment has exactly one session, every message was stored once and
 * reached the other participant, and `billing:audit` is clean.
 */
import { sql } from 'kysely';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/index.js';
import { signToken } from '../../src/lib/auth.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { cloneTestDatabase, isPostgres, type TestDatabase } from '../helpers/db.js';
import { freePort, runCli, spawnCli, waitForStatus, type Spawned } from '../helpers/process.js';

const PATIENTS = 500;
const DOCTORS = 50;
const WAVES = 4;

describe.skipIf(!isPostgres)('multi-process deployment', () => {
  let tdb: TestDatabase;
  let database: Database;
  let env: Record<string, string>;
  const apis: { port: number; proc: Spawned }[] = [];
  const workers: Spawned[] = [];

  const startApi = async (port: number) => {
    const proc = spawnCli(['serve'], { ...env, PORT: String(port), LOG_LEVEL: 'warn' });
    if (!(await waitForStatus(`http://127.0.0.1:${port}/health/ready`, 200, 60_000))) throw new Error(`API on ${port} did not start: ${proc.stderr()}`);
    return proc;
  };
  const startWorker = () => spawnCli(['worker'], { ...env, LOG_LEVEL: 'warn' });

  beforeAll(async () => {
    tdb = await cloneTestDatabase();
    env = {
      DATABASE_URL: tdb.databaseUrl!,
      JWT_SECRET: TEST_JWT_SECRET,
      DB_POOL_SIZE: '6',
      AUTO_START_INTERVAL_SECONDS: '1',
      BILLING_TICK_SECONDS: '5',
      // A whole clinic's day from one test client: the per-user limits are tested elsewhere.
      RATE_LIMIT_CREATE_PER_MINUTE: '1000000',
      RATE_LIMIT_CHAT_BURST: '1000000',
      RATE_LIMIT_WRITE_PER_MINUTE: '1000000',
      RATE_LIMIT_WS_CONNECT_PER_MINUTE: '1000000',
      WS_MAX_CONNECTIONS_PER_USER: '10000',
    };
    database = await openDatabase({ databaseUrl: tdb.databaseUrl, dataDir: '' });
    const ports = [await freePort(), await freePort()];
    for (const port of ports) apis.push({ port, proc: await startApi(port) });
    for (let i = 0; i < 3; i++) workers.push(startWorker());
  }, 120_000);

  afterAll(async () => {
    for (const p of [...apis.map((a) => a.proc), ...workers]) p.child.kill('SIGKILL');
    await database?.close();
    await tdb?.drop();
  });

  it('runs a day of consultations and keeps every invariant', async () => {
    const db = database.db;
    const plan = await db.insertInto('plans').values({ name: 'day', text_credits: 10, validity_days: 30 }).returning('id').executeTakeFirstOrThrow();
    const doctors = await db
      .insertInto('users')
      .values(Array.from({ length: DOCTORS }, (_, i) => ({ role: 'doctor' as const, name: `Doctor ${i}`, country: i % 5 === 0 ? 'Malawi' : 'Kenya' })))
      .returning(['id', 'role'])
      .execute();
    const patients = await db
      .insertInto('users')
      .values(Array.from({ length: PATIENTS }, (_, i) => ({ role: 'patient' as const, name: `Patient ${i}` })))
      .returning(['id', 'role'])
      .execute();
    await db
      .insertInto('subscriptions')
      .values(
        patients.map((p) => ({
          patient_id: p.id,
          plan_id: plan.id,
          payment_reference: `day-${p.id}`,
          text_credits: 10,
          voice_credits: 0,
          video_credits: 0,
          text_remaining: 10,
          voice_remaining: 0,
          video_remaining: 0,
          expires_at: new Date(Date.now() + 30 * 86_400_000),
        })),
      )
      .execute();
    const token = new Map<number, string>();
    for (const u of [...doctors, ...patients]) token.set(u.id, await signToken(TEST_JWT_SECRET, { sub: u.id, role: u.role }, 3 * 3600));

    const api = (i: number) => `http://127.0.0.1:${apis[i % apis.length]!.port}`;
    const call = async (i: number, userId: number, method: string, path: string, body?: unknown) => {
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await fetch(`${api(i)}${path}`, {
            method,
            headers: { authorization: `Bearer ${token.get(userId)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
            body: body === undefined ? undefined : JSON.stringify(body),
            signal: AbortSignal.timeout(30_000),
          });
          if (res.status === 503 && attempt < 20) {
            await new Promise((r) => setTimeout(r, 250));
            continue;
          }
          return { status: res.status, body: (await res.json()) as { data?: any; error_code?: string } };
        } catch (err) {
          if (attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    };
    const inBatches = async <T>(items: T[], size: number, fn: (item: T, i: number) => Promise<void>) => {
      for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map((it, j) => fn(it, i + j)));
    };

    const sent = new Map<string, { sessionContext: string; recipient: number }>();
    const received = new Set<string>();
    const allAppointments: number[] = [];

    for (let wave = 0; wave < WAVES; wave++) {
      // Book: each patient one appointment, spread over the doctors, two minutes ahead (booking
      // and confirming 500 must finish before the first is due, or the worker expires it as a
      // pending appointment past its time); once confirmed, the wave is moved to a few seconds from now.
      const dueAt = Date.now() + 120_000;
      const booked: { id: number; patient: number; doctor: number }[] = [];
      await inBatches(patients, 50, async (p, i) => {
        const doctor = doctors[i % DOCTORS]!.id;
        const at = new Date(dueAt + i * 7).toISOString();
        const res = await call(i, p.id, 'POST', '/api/v2/appointments', { doctor_id: doctor, scheduled_at: at, appointment_type: 'text' });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        booked.push({ id: res.body.data.id, patient: p.id, doctor });
      });
      await inBatches(booked, 50, async (a, i) => {
        const res = await call(i + 1, a.doctor, 'POST', `/api/v2/appointments/${a.id}/confirm`);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
      });
      allAppointments.push(...booked.map((b) => b.id));
      const shiftMs = Math.max(0, dueAt - Date.now() - 3_000);
      await db
        .updateTable('appointments')
        .set({ scheduled_at: sql`scheduled_at - ${shiftMs} * interval '1 millisecond'` })
        .where('id', 'in', booked.map((b) => b.id))
        .execute();

      if (wave === 1) workers[0]!.child.kill('SIGKILL'); // a worker dies while this wave is due

      // Wait for auto-start to convert the whole wave.
      await expect
        .poll(
          async () =>
            Number(
              (await db.selectFrom('appointments').select(sql<number>`count(*)`.as('n')).where('id', 'in', booked.map((b) => b.id)).where('session_id', 'is not', null).executeTakeFirstOrThrow()).n,
            ),
          { timeout: 90_000, interval: 500 },
        )
        .toBe(booked.length);
      if (wave === 1) workers[0] = startWorker();

      const sessions = await Promise.all(
        booked.map(async (a, i) => {
          const res = await call(i, a.patient, 'GET', `/api/v2/appointments/${a.id}/session`);
          return { ...a, context: res.body.data.session_context as string };
        }),
      );

      // Real-time: the patient listens on API 0, the doctor on API 1.
      const sockets: WebSocket[] = [];
      const connect = (apiIndex: number, userId: number, context: string) =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${apis[apiIndex]!.port}/api/v2/ws?token=${token.get(userId)}`);
          sockets.push(ws);
          setTimeout(() => reject(new Error(`no subscription acknowledged for user ${userId} on API ${apiIndex} (readyState ${ws.readyState})`)), 30_000);
          ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', session_context: context })));
          ws.on('message', (raw) => {
            const text = raw.toString();
            // Messages are sent once every listener has its subscription acknowledged.
            if (text.includes('"type":"subscribed"')) resolve();
            if (text.includes('"type":"error"')) reject(new Error(text));
            if (!text.includes('message.created')) return;
            for (const m of text.matchAll(/"client_message_id":"([^"]+)"/g)) {
              const info = sent.get(m[1]!);
              if (info && info.recipient === userId) received.add(m[1]!);
            }
          });
          ws.on('error', reject);
          ws.on('close', (code, reason) => reject(new Error(`socket of user ${userId} closed before its subscription: ${code} ${reason.toString()}`)));
        });
      await inBatches(sessions, 100, async (s) => {
        await connect(0, s.patient, s.context);
        await connect(1, s.doctor, s.context);
      });

      // Chat: patient writes through API 0, the doctor answers through API 1.
      await inBatches(sessions, 50, async (s) => {
        const pm = `w${wave}-p-${s.id}`;
        sent.set(pm, { sessionContext: s.context, recipient: s.doctor });
        let res = await call(0, s.patient, 'POST', `/api/v2/sessions/${s.context}/messages`, { client_message_id: pm, type: 'text', body: 'Hello doctor' });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        const dm = `w${wave}-d-${s.id}`;
        sent.set(dm, { sessionContext: s.context, recipient: s.patient });
        res = await call(1, s.doctor, 'POST', `/api/v2/sessions/${s.context}/messages`, { client_message_id: dm, type: 'text', body: 'Hello, how can I help?' });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      });
      const waveIds = [...sent.keys()].filter((k) => k.startsWith(`w${wave}-`));
      await expect.poll(() => waveIds.filter((k) => received.has(k)).length, { timeout: 30_000, interval: 250 }).toBe(waveIds.length);
      for (const ws of sockets) ws.close();

      if (wave === 1) {
        // Restart API 1 between waves, as a rolling deploy would.
        apis[1]!.proc.child.kill('SIGTERM');
        expect(await apis[1]!.proc.exited).toBe(0);
        apis[1]!.proc = await startApi(apis[1]!.port);
      }

      // End: half by the patient, half by the doctor, alternating API processes.
      await inBatches(sessions, 50, async (s, i) => {
        const res = await call(i, i % 2 ? s.doctor : s.patient, 'POST', `/api/v2/sessions/${s.context}/end`);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
      });
    }

    // Invariants.
    const links = await sql<{ appointments: number; linked: number; sessions: number; mismatched: number }>`
      select (select count(*) from appointments where id = any(${`{${allAppointments.join(',')}}`}::bigint[]))::int as appointments,
             (select count(*) from appointments where id = any(${`{${allAppointments.join(',')}}`}::bigint[]) and session_id is not null)::int as linked,
             (select count(*) from sessions where appointment_id = any(${`{${allAppointments.join(',')}}`}::bigint[]))::int as sessions,
             (select count(*) from appointments a join sessions s on s.id = a.session_id where s.appointment_id <> a.id)::int as mismatched`.execute(db);
    expect(links.rows[0]).toEqual({ appointments: PATIENTS * WAVES, linked: PATIENTS * WAVES, sessions: PATIENTS * WAVES, mismatched: 0 });
    const stored = await sql<{ n: number; distinct_ids: number }>`
      select count(*)::int as n, count(distinct client_message_id)::int as distinct_ids from messages where client_message_id like 'w%'`.execute(db);
    expect(stored.rows[0]).toEqual({ n: sent.size, distinct_ids: sent.size });
    expect(received.size).toBe(sent.size);

    const audit = await runCli(['billing:audit', '--json'], { DATABASE_URL: tdb.databaseUrl!, JWT_SECRET: TEST_JWT_SECRET });
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    const ledger = await sql<{ n: number }>`select count(*)::int as n from ledger_entries`.execute(db);
    expect(ledger.rows[0]!.n).toBe(PATIENTS * WAVES); // each short text consultation is one unit
  }, 600_000);
});
