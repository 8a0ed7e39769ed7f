/**
 * Load test (figures: docs/benchmarks.md): a realistic mix against ONE API process — patients polling
 * GET /api/v2/appointments/{id}/session, sending and listing messages, WebSocket clients receiving
 * the messages — on PostgreSQL and on PGlite, beside the ceiling of a minimal Fastify route that
 * reads one row from the same database. Then a soak: resident memory of the API process after
 * warm-up vs at the end. Prints JSON and a table. Not a test.
 *
 *   npm run bench:load                 # 30 s per case, 10 min soak on PostgreSQL
 *   DURATION=10 SOAK_SECONDS=60 npm run bench:load   (also WARMUP_SECONDS, default 60; SAMPLE_SECONDS, 30)
 *   BENCH_PROFILE=/tmp/prof SOAK_SECONDS=0 npm run bench:load   (CPU profiles of the API process)
 *   BENCH_DATABASES=postgresql DB_POOL_SIZE=20 npm run bench:load
 *
 * It starts the compiled server (`bin/sessiongate.js serve`; the npm script builds it first).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import WebSocket from 'ws';
import { openDatabase } from '../src/db/index.js';
import { migrate } from '../src/db/migrate.js';
import { signToken } from '../src/lib/auth.js';
import { NO_USER_LIMITS } from './http-harness.js';
import { createScratchDatabase } from './scratch-database.js';

const ROOT = join(import.meta.dirname, '..');
const PG_URL = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DURATION = Number(process.env['DURATION'] ?? 30);
const SOAK_SECONDS = Number(process.env['SOAK_SECONDS'] ?? 600);
const CONNECTIONS = 50;
const SECRET = 'bench-secret-bench-secret-bench-secret-000';
const SESSIONS = 200;

type Env = Record<string, string>;

async function prepare(env: Env) {
  const database = await openDatabase({ databaseUrl: env['DATABASE_URL'] ?? null, dataDir: env['DATA_DIR'] ?? '' });
  await migrate(database.db);
  const db = database.db;
  const plan = await db.insertInto('plans').values({ name: 'bench', text_credits: 100, validity_days: 30 }).returning('id').executeTakeFirstOrThrow();
  const doctors = await db.insertInto('users').values(Array.from({ length: SESSIONS }, (_, i) => ({ role: 'doctor' as const, name: `D${i}` }))).returning('id').execute();
  const patients = await db.insertInto('users').values(Array.from({ length: SESSIONS }, (_, i) => ({ role: 'patient' as const, name: `P${i}` }))).returning('id').execute();
  const rows = [];
  for (let i = 0; i < SESSIONS; i++) {
    await db
      .insertInto('subscriptions')
      .values({ patient_id: patients[i]!.id, plan_id: plan.id, payment_reference: `b${i}`, text_credits: 100, voice_credits: 0, video_credits: 0, text_remaining: 100, voice_remaining: 0, video_remaining: 0, expires_at: new Date(Date.now() + 86_400_000) })
      .execute();
    const appt = await db
      .insertInto('appointments')
      .values({ patient_id: patients[i]!.id, doctor_id: doctors[i]!.id, appointment_type: 'text', status: 'in_progress', scheduled_at: new Date(Date.now() - 60_000) })
      .returning('id')
      .executeTakeFirstOrThrow();
    const s = await db
      .insertInto('sessions')
      .values({ kind: 'text', modality: 'text', source: 'APPOINTMENT', appointment_id: appt.id, patient_id: patients[i]!.id, doctor_id: doctors[i]!.id, status: 'active', activated_at: new Date() })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db.updateTable('appointments').set({ session_id: s.id }).where('id', '=', appt.id).execute();
    rows.push({ appointment: appt.id, session: s.id, patient: patients[i]!.id, doctor: doctors[i]!.id });
  }
  await database.close();
  return Promise.all(
    rows.map(async (r) => ({
      ...r,
      patientToken: await signToken(SECRET, { sub: r.patient, role: 'patient' }, 7200),
      doctorToken: await signToken(SECRET, { sub: r.doctor, role: 'doctor' }, 7200),
    })),
  );
}

function startApi(env: Env, port: number): Promise<ChildProcess> {
  // BENCH_PROFILE=<dir>: a CPU profile of the API process, written when it exits.
  const profile = process.env['BENCH_PROFILE'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_PROFILE']}`] : [];
  const child = spawn(process.execPath, [...profile, join(ROOT, 'bin', 'sessiongate.js'), 'serve'], {
    env: {
      PATH: process.env['PATH'],
      ...env,
      PORT: String(port),
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      ...NO_USER_LIMITS,
      DB_POOL_SIZE: process.env['DB_POOL_SIZE'] ?? '10',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return waitReady(port).then(
    () => child,
    (err: Error) => {
      child.kill('SIGKILL');
      throw new Error(`${err.message}: ${stderr.slice(-2000)}`);
    },
  );
}

async function waitReady(port: number) {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health/ready`)).ok) return;
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('server did not start');
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

interface MemorySample {
  at_s: number;
  rss_mb: number;
  heap_used_mb: number;
  external_mb: number;
}

const WARMUP_SECONDS = Number(process.env['WARMUP_SECONDS'] ?? 60);
const SAMPLE_SECONDS = Number(process.env['SAMPLE_SECONDS'] ?? 30);

async function memory(port: number, pid: number, at: number): Promise<MemorySample> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(text)?.[1] ?? NaN) / 1048576;
  return { at_s: at, rss_mb: Math.round(rssMb(pid)), heap_used_mb: Math.round(metric('nodejs_heap_size_used_bytes')), external_mb: Math.round(metric('nodejs_external_memory_bytes')) };
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

type Conversation = Awaited<ReturnType<typeof prepare>>[number];

async function mix(port: number, data: Conversation[], seconds: number, withPollPhase = true) {
  // WebSocket listeners: every doctor subscribed to their session.
  const sockets = await Promise.all(
    data.map(
      (d) =>
        new Promise<WebSocket>((resolve) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v2/ws?token=${d.doctorToken}`);
          ws.on('open', () => {
            ws.send(JSON.stringify({ type: 'subscribe', session_context: `text_session:${d.session}` }));
            resolve(ws);
          });
          ws.on('error', () => resolve(ws));
        }),
    ),
  );
  let wsEvents = 0;
  for (const ws of sockets) ws.on('message', () => wsEvents++);
  let n = 0;
  const conversation = (d: Conversation): autocannon.Request[] => [
    { method: 'GET' as const, path: `/api/v2/appointments/${d.appointment}/session`, headers: { authorization: `Bearer ${d.patientToken}` } },
    { method: 'GET' as const, path: `/api/v2/appointments/${d.appointment}/session`, headers: { authorization: `Bearer ${d.patientToken}` } },
    { method: 'GET' as const, path: `/api/v2/sessions/text_session:${d.session}/messages?limit=20`, headers: { authorization: `Bearer ${d.patientToken}` } },
    {
      method: 'POST' as const,
      path: `/api/v2/sessions/text_session:${d.session}/messages`,
      headers: { authorization: `Bearer ${d.patientToken}`, 'content-type': 'application/json' },
      setupRequest: (req) => ({ ...req, body: JSON.stringify({ client_message_id: `load-${process.pid}-${++n}`, type: 'text', body: 'How are you feeling today?' }) }),
    },
  ];
  // Each connection is its own patients' client: it works through its own share of the
  // conversations (a patient does not fire fifty concurrent requests at one session).
  const requests = data.flatMap(conversation);
  let clients = 0;
  const setupClient = (client: { setRequests(r: autocannon.Request[]): void }) => {
    const i = clients++ % CONNECTIONS;
    client.setRequests(data.filter((_, k) => k % CONNECTIONS === i).flatMap(conversation));
  };
  const result = await autocannon({ url: `http://127.0.0.1:${port}`, connections: CONNECTIONS, duration: seconds, requests, setupClient });
  for (const ws of sockets) ws.close();
  if (!withPollPhase) return { mix_rps: Math.round(result.requests.average), errors: result.errors + result.non2xx + result.timeouts };
  const poll = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    duration: Math.max(5, Math.round(seconds / 3)),
    requests: data.map((d) => ({ method: 'GET' as const, path: `/api/v2/appointments/${d.appointment}/session`, headers: { authorization: `Bearer ${d.patientToken}` } })),
  });
  return {
    mix_rps: Math.round(result.requests.average),
    mix_p50_ms: result.latency.p50,
    mix_p99_ms: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
    poll_rps: Math.round(poll.requests.average),
    poll_p50_ms: poll.latency.p50,
    poll_p99_ms: poll.latency.p99,
    poll_errors: poll.errors + poll.non2xx + poll.timeouts,
    ws_events: wsEvents,
  };
}

/** Runs in a child process (`--ceiling`): a bare Fastify route reading one row, nothing else. */
async function serveCeiling(env: Env) {
  const database = await openDatabase({ databaseUrl: env['DATABASE_URL'] ?? null, dataDir: env['DATA_DIR'] ?? '' });
  const app = Fastify();
  app.get('/row/:id', async (req) => database.db.selectFrom('appointments').selectAll().where('id', '=', Number((req.params as { id: string }).id)).executeTakeFirst());
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!((app.server.address() as { port: number }).port);
  process.once('message', async () => {
    await app.close();
    await database.close();
    process.exit(0);
  });
}

/** The ceiling, in its own process like the API (the load generator stays out of its event loop). */
async function ceiling(env: Env) {
  const child = fork(import.meta.filename, ['--ceiling', JSON.stringify(env)], { execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve(m as number));
    child.once('exit', (code) => reject(new Error(`ceiling server exited with ${code}`)));
  });
  const r = await autocannon({ url: `http://127.0.0.1:${port}/row/1`, connections: CONNECTIONS, duration: Math.max(5, Math.round(DURATION / 3)) });
  child.send('stop');
  await new Promise((r) => child.once('exit', r));
  return { rps: Math.round(r.requests.average), p50_ms: r.latency.p50, p99_ms: r.latency.p99 };
}

async function runCase(name: string, env: Env, soak: boolean) {
  const data = await prepare(env);
  // The embedded database is one process: measure its ceiling before the API opens the directory.
  const ceil = env['DATA_DIR'] ? await ceiling(env) : null;
  const port = await freePort();
  const api = await startApi(env, port);
  try {
    const res = await mix(port, data, DURATION);
    const out: Record<string, unknown> = { name, ...res, ceiling: ceil ?? (await ceiling(env)) };
    if (soak) {
      await mix(port, data, WARMUP_SECONDS, false);
      // Resident memory and the V8 heap (from the process's own /metrics) every SAMPLE_SECONDS:
      // a leak climbs steadily, a warming heap levels off.
      const samples: MemorySample[] = [await memory(port, api.pid!, 0)];
      const started = Date.now();
      const timer = setInterval(() => {
        void memory(port, api.pid!, Math.round((Date.now() - started) / 1000)).then((m) => samples.push(m));
      }, SAMPLE_SECONDS * 1000);
      const load = await mix(port, data, SOAK_SECONDS, false);
      clearInterval(timer);
      samples.push(await memory(port, api.pid!, Math.round((Date.now() - started) / 1000)));
      // Resident memory follows the garbage collector's saw-tooth (±25 % between two readings a
      // minute apart), so growth compares the median of the first third of the samples with the
      // median of the last third rather than two single readings.
      const third = Math.max(1, Math.floor(samples.length / 3));
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const early = med(samples.slice(0, third).map((m) => m.rss_mb));
      const late = med(samples.slice(-third).map((m) => m.rss_mb));
      out['soak'] = {
        seconds: SOAK_SECONDS,
        warmup_seconds: WARMUP_SECONDS,
        requests_per_s: load.mix_rps,
        errors: load.errors,
        rss_early_median_mb: early,
        rss_late_median_mb: late,
        rss_max_mb: Math.max(...samples.map((m) => m.rss_mb)),
        growth_pct: Math.round(((late - early) / early) * 1000) / 10,
        samples,
      };
    }
    return out;
  } finally {
    api.kill('SIGTERM');
    await new Promise((r) => api.on('exit', r));
  }
}

async function main() {
  const scratch = await createScratchDatabase(PG_URL, 'sg_bench_load');
  const dataDir = mkdtempSync(join(tmpdir(), 'sg-load-'));
  try {
    // BENCH_DATABASES=postgresql (or pglite): one of the two only.
    const which = (process.env['BENCH_DATABASES'] ?? 'postgresql,pglite').split(',');
    const results = [];
    if (which.includes('postgresql')) results.push(await runCase('postgresql', { DATABASE_URL: scratch.url }, SOAK_SECONDS > 0));
    if (which.includes('pglite')) results.push(await runCase('pglite', { DATA_DIR: dataDir }, false));
    console.log(JSON.stringify({ duration_s: DURATION, connections: CONNECTIONS, results }, null, 2));
    console.log('\n| database | mix req/s | mix p50 | mix p99 | errors | poll req/s | poll p99 (target ≤ 20 ms on PG) | minimal route req/s | minimal p99 | mix / minimal |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of results as any[]) {
      console.log(
        `| ${r.name} | ${r.mix_rps} | ${r.mix_p50_ms} ms | ${r.mix_p99_ms} ms | ${r.errors + r.poll_errors} | ${r.poll_rps} | ${r.poll_p99_ms} ms | ${r.ceiling.rps} | ${r.ceiling.p99_ms} ms | ${(r.mix_rps / r.ceiling.rps).toFixed(2)} |`,
      );
      if (r.soak) {
      console.log(
        `soak (${r.soak.seconds} s of the mix at ${r.soak.requests_per_s} req/s after ${r.soak.warmup_seconds} s warm-up, ${r.soak.errors} errors): ` +
          `RSS median ${r.soak.rss_early_median_mb} MB (first third) → ${r.soak.rss_late_median_mb} MB (last third), ${r.soak.growth_pct} % (target ≤ 10 %); max ${r.soak.rss_max_mb} MB`,
      );
      console.log(`  RSS / heap used / external (MB): ${r.soak.samples.map((m: MemorySample) => `${m.at_s}s ${m.rss_mb}/${m.heap_used_mb}/${m.external_mb}`).join(', ')}`);
    }
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    await scratch.drop();
  }
}

if (process.argv[2] === '--ceiling') await serveCeiling(JSON.parse(process.argv[3]!) as Env);
else await main();
