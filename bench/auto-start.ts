/**
 * Auto-start throughput (figures: docs/benchmarks.md), measured side by side in one run on PostgreSQL:
 *
 *   A. auto-start — the real job (`runJobOnce(autoStartJob)`): claim with SKIP LOCKED, the single
 *      writer's set-based batches, conversion rows, outbox rows, the job-run row, one log line per
 *      appointment (to /dev/null), metrics. Notification delivery is not part of the run (it
 *      happens after it, in the background and in the delivery job); its drain time is reported.
 *   B. per-row — a port of the original algorithm: runs of 50 candidates, each appointment in its
 *      own transaction: lock the row, re-check, insert the session, update the appointment.
 *   C. ceiling — one INSERT … SELECT (a data-modifying CTE) converting every due appointment in a
 *      single statement, with no bookkeeping at all.
 *
 * Each case runs on a fresh copy (CREATE DATABASE … TEMPLATE) of the same data set: 10,000 due
 * appointments among 200,000 historical ones (70 % completed with an ended session, the rest
 * cancelled / missed / expired). Plus: one auto-start run over 1,000 due appointments with 0 vs
 * 1,000,000 historical rows (the cost must not grow with history).
 *
 *   npm run bench:auto-start         (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
 *   REPEAT=3 DUE=10000 HISTORY=200000 BIG_HISTORY=1000000 npm run bench:auto-start
 *
 * Creates and drops its own databases (sg_bench_*). Not a test: prints JSON and a table.
 */
import { cpus } from 'node:os';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../src/config/env.js';
import { FlagService } from '../src/config/flags.js';
import { closeContext, createContext } from '../src/context.js';
import { openDatabase } from '../src/db/index.js';
import { migrate } from '../src/db/migrate.js';
import { autoStartJob, deliverOutbox } from '../src/modules/jobs/auto-start.js';
import { runJobOnce } from '../src/modules/jobs/scheduler.js';

const ADMIN_URL = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DUE = Number(process.env['DUE'] ?? 10_000);
const HISTORY = Number(process.env['HISTORY'] ?? 200_000);
const SMALL_DUE = Number(process.env['SMALL_DUE'] ?? 1_000);
const BIG_HISTORY = Number(process.env['BIG_HISTORY'] ?? 1_000_000);
const REPEAT = Number(process.env['REPEAT'] ?? 3);
const PREFIX = `sg_bench_${process.pid}`;
const SECRET = 'bench-secret-bench-secret-bench-secret-000';

const urlFor = (db: string) => {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${db}`;
  return u.toString();
};

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const created: string[] = [];
async function createDb(name: string, template?: string) {
  await admin((c) => c.query(`create database ${name}${template ? ` template ${template}` : ''}`));
  created.push(name);
}
async function dropDb(name: string) {
  await admin((c) => c.query(`drop database if exists ${name} with (force)`));
}

const log = (msg: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);

/**
 * A data set: `due` confirmed appointments whose time has come (each its own patient, so none is
 * refused by the one-live-session-per-patient rule), `history` finished ones, patients with a
 * subscription (the writer reads credits at start).
 */
export async function buildTemplate(name: string, due: number, history: number) {
  await createDb(name);
  const database = await openDatabase({ databaseUrl: urlFor(name), dataDir: '' });
  await migrate(database.db);
  await database.close();
  const c = new pg.Client({ connectionString: urlFor(name) });
  await c.connect();
  try {
    const patients = Math.max(due, 1000);
    const doctors = 200;
    await c.query(
      `insert into users (role, name, country) select 'doctor', 'Doctor ' || g, case when g % 4 = 0 then 'Malawi' else 'Kenya' end from generate_series(1, ${doctors}) g`,
    );
    await c.query(`insert into users (role, name) select 'patient', 'Patient ' || g from generate_series(1, ${patients}) g`);
    await c.query(`insert into plans (name, text_credits, voice_credits, video_credits, validity_days) values ('bench', 10, 10, 10, 365)`);
    await c.query(`
      insert into subscriptions (patient_id, plan_id, payment_reference, text_credits, voice_credits, video_credits,
                                 text_remaining, voice_remaining, video_remaining, starts_at, expires_at)
      select u.id, p.id, 'bench-' || u.id, 10, 10, 10, 10, 10, 10, now() - interval '1 day', now() + interval '364 days'
        from users u, plans p where u.role = 'patient'`);
    if (history > 0) {
      // History: finished appointments in the past, 70 % completed with an ended session, the
      // rest cancelled / missed / expired. Written with explicit ids in one pass each (foreign
      // keys switched off for the load, ids checked below), so the tables and indexes have the
      // size and shape of real history — no dead tuples from a load-then-link update.
      await c.query('set session_replication_role = replica');
      await c.query(`
        insert into appointments (id, patient_id, doctor_id, appointment_type, scheduled_at, status, session_id, created_at, updated_at)
        overriding system value
        select g, ${doctors} + 1 + (g % ${patients}), 1 + (g % ${doctors}),
               (array['text', 'audio', 'voice', 'video'])[1 + g % 4],
               now() - interval '2 days' - g * interval '37 seconds',
               case when g % 10 < 7 then 'completed' when g % 10 = 7 then 'cancelled' when g % 10 = 8 then 'missed' else 'expired' end,
               case when g % 10 < 7 then g end,
               now() - interval '3 days' - g * interval '37 seconds', now() - interval '2 days'
          from generate_series(1, ${history}) g`);
      await c.query(`
        insert into sessions (id, kind, modality, source, appointment_id, patient_id, doctor_id, status, created_at, activated_at,
                              connected_at, ended_at, end_reason, units_billed, settled_at)
        overriding system value
        select a.id, case when a.appointment_type = 'text' then 'text' else 'call' end,
               case a.appointment_type when 'text' then 'text' when 'video' then 'video' else 'voice' end,
               'APPOINTMENT', a.id, a.patient_id, a.doctor_id, 'ended', a.scheduled_at,
               case when a.appointment_type = 'text' then a.scheduled_at + interval '1 minute' end,
               case when a.appointment_type <> 'text' then a.scheduled_at + interval '1 minute' end,
               a.scheduled_at + interval '25 minutes', 'ended_by_patient', 3, a.scheduled_at + interval '26 minutes'
          from appointments a where a.session_id is not null`);
      await c.query('set session_replication_role = origin');
      await c.query(`select setval(pg_get_serial_sequence('appointments', 'id'), ${history})`);
      await c.query(`select setval(pg_get_serial_sequence('sessions', 'id'), ${history})`);
      const broken = await c.query(`select count(*)::int as n from appointments a left join sessions s on s.id = a.session_id
                                     where a.session_id is not null and (s.id is null or s.appointment_id <> a.id)`);
      if (broken.rows[0].n !== 0) throw new Error('history load produced broken links');
    }
    // Due: confirmed, time come within the last ~3 hours, spread over the four types.
    await c.query(`
      insert into appointments (patient_id, doctor_id, appointment_type, scheduled_at, status)
      select ${doctors} + g, 1 + (g % ${doctors}), (array['text', 'audio', 'voice', 'video'])[1 + g % 4],
             now() - interval '5 seconds' - g * interval '1 second', 'confirmed'
        from generate_series(1, ${due}) g`);
    await c.query('create extension if not exists pg_prewarm');
    await c.query('vacuum (analyze)');
    await c.query('checkpoint');
  } finally {
    await c.end();
  }
}

/**
 * The same starting state for every case: the indexes of the tables a conversion touches (and
 * the small users / subscriptions tables) loaded into shared buffers, then a checkpoint — so
 * each case pays the same kind of costs (buffer hits, and a full-page WAL image on the first
 * change of each page) instead of whatever the copy left in the caches.
 */
async function warm(c: pg.Client) {
  await c.query(`
    select pg_prewarm(i.indexrelid)
      from pg_index i join pg_class t on t.oid = i.indrelid
     where t.relname in ('appointments', 'sessions', 'users', 'subscriptions')`);
  await c.query(`select pg_prewarm('users'), pg_prewarm('subscriptions')`);
  await c.query(`select count(*) from appointments where status = 'confirmed' and session_id is null and scheduled_at <= now()`);
  await c.query('checkpoint');
}

async function withCopy<T>(template: string, fn: (url: string) => Promise<T>): Promise<T> {
  const name = `${PREFIX}_run`;
  await dropDb(name);
  await createDb(name, template);
  try {
    const c = new pg.Client({ connectionString: urlFor(name) });
    await c.connect();
    await warm(c);
    await c.end();
    return await fn(urlFor(name));
  } finally {
    await dropDb(name);
  }
}

async function verify(url: string, expected: number) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ due: string; linked: string }>(`
      select (select count(*) from appointments where status = 'confirmed' and session_id is null and scheduled_at <= now()) as due,
             (select count(*) from appointments a join sessions s on s.id = a.session_id and s.appointment_id = a.id
               where a.status = 'in_progress') as linked`);
    const row = r.rows[0]!;
    if (Number(row.due) !== 0 || Number(row.linked) !== expected)
      throw new Error(`verification failed: ${JSON.stringify(row)} expected ${expected} linked`);
  } finally {
    await c.end();
  }
}

/** A. The real auto-start job, one run, in a process context of its own. */
async function autoStart(url: string, expected: number) {
  const batch = process.env['AUTO_START_BATCH_SIZE'];
  const config = loadConfig({
    DATABASE_URL: url,
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'info',
    DB_POOL_SIZE: '4',
    ...(batch ? { AUTO_START_BATCH_SIZE: batch } : {}),
  });
  const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }));
  const ctx = await createContext(config, { role: 'bench', logger, flags: new FlagService(() => ({})), migrate: false });
  try {
    const t0 = performance.now();
    const run = await runJobOnce(ctx, autoStartJob);
    const ms = performance.now() - t0;
    if (run.status !== 'succeeded' || run.counts.created !== expected) throw new Error(`auto-start: ${JSON.stringify(run)}`);
    const d0 = performance.now();
    const delivered = await deliverOutbox(ctx);
    const deliveryMs = performance.now() - d0;
    await new Promise((r) => setTimeout(r, 200)); // let the run's own background delivery settle
    await verify(url, expected);
    return { ms, batches: Number(run.counts.details?.['batches']), deliveryMs, delivered };
  } finally {
    await closeContext(ctx);
  }
}

/** B. The original algorithm: 50 per run, one transaction per appointment. */
async function perRow(url: string, expected: number) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const t0 = performance.now();
    let converted = 0;
    let runs = 0;
    for (;;) {
      const candidates = await c.query<{ id: string }>(`
        select id from appointments
         where status = 'confirmed' and session_id is null and scheduled_at <= now()
         order by scheduled_at limit 50`);
      if (candidates.rows.length === 0) break;
      runs += 1;
      for (const { id } of candidates.rows) {
        await c.query('begin');
        try {
          const a = await c.query<{
            id: string;
            status: string;
            session_id: string | null;
            appointment_type: string;
            patient_id: string;
            doctor_id: string;
          }>('select id, status, session_id, appointment_type, patient_id, doctor_id from appointments where id = $1 for update', [id]);
          const row = a.rows[0];
          if (!row || row.status !== 'confirmed' || row.session_id !== null) {
            await c.query('rollback');
            continue;
          }
          const text = row.appointment_type === 'text';
          const modality = text ? 'text' : row.appointment_type === 'video' ? 'video' : 'voice';
          const s = await c.query<{ id: string }>(
            `insert into sessions (kind, modality, source, appointment_id, patient_id, doctor_id, status)
             values ($1, $2, 'APPOINTMENT', $3, $4, $5, $6) returning id`,
            [text ? 'text' : 'call', modality, row.id, row.patient_id, row.doctor_id, text ? 'waiting_for_doctor' : 'waiting'],
          );
          await c.query(`update appointments set session_id = $1, status = 'in_progress' where id = $2`, [s.rows[0]!.id, row.id]);
          await c.query('commit');
          converted += 1;
        } catch (err) {
          await c.query('rollback');
          throw err;
        }
      }
    }
    const ms = performance.now() - t0;
    if (converted !== expected) throw new Error(`per-row converted ${converted}`);
    await verify(url, expected);
    return { ms, runs };
  } finally {
    await c.end();
  }
}

/** C. The ceiling: every due appointment converted by one statement. */
async function ceiling(url: string, expected: number) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const t0 = performance.now();
    const r = await c.query(`
      with due as (
        select id, patient_id, doctor_id, appointment_type from appointments
         where status = 'confirmed' and session_id is null and scheduled_at <= now()
           for update),
      ins as (
        insert into sessions (kind, modality, source, appointment_id, patient_id, doctor_id, status)
        select case when appointment_type = 'text' then 'text' else 'call' end,
               case appointment_type when 'text' then 'text' when 'video' then 'video' else 'voice' end,
               'APPOINTMENT', id, patient_id, doctor_id,
               case when appointment_type = 'text' then 'waiting_for_doctor' else 'waiting' end
          from due
        returning id, appointment_id)
      update appointments a set session_id = ins.id, status = 'in_progress' from ins where a.id = ins.appointment_id`);
    const ms = performance.now() - t0;
    if (r.rowCount !== expected) throw new Error(`ceiling converted ${r.rowCount}`);
    await verify(url, expected);
    return { ms };
  } finally {
    await c.end();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main() {
  const version = await admin(async (c) => (await c.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]!.v);
  const machine = { cpus: cpus().length, cpu_model: cpus()[0]?.model ?? 'unknown', node: process.version, postgres: version };
  log(`machine: ${JSON.stringify(machine)}`);

  const main = `${PREFIX}_main`;
  log(`building ${DUE} due among ${HISTORY} historical appointments…`);
  await buildTemplate(main, DUE, HISTORY);

  const a: number[] = [];
  const c: number[] = [];
  const delivery: number[] = [];
  let batches = 0;
  for (let i = 0; i < REPEAT; i++) {
    log(`auto-start ${i + 1}/${REPEAT}`);
    const r = await withCopy(main, (url) => autoStart(url, DUE));
    a.push(r.ms);
    delivery.push(r.deliveryMs);
    batches = r.batches;
    log(`ceiling ${i + 1}/${REPEAT}`);
    c.push((await withCopy(main, (url) => ceiling(url, DUE))).ms);
  }
  log('per-row port (one run over everything; it takes a while)…');
  const b = await withCopy(main, (url) => perRow(url, DUE));

  log(`building ${SMALL_DUE} due with 0 and with ${BIG_HISTORY} historical rows…`);
  const small0 = `${PREFIX}_h0`;
  const smallBig = `${PREFIX}_hbig`;
  await buildTemplate(small0, SMALL_DUE, 0);
  await buildTemplate(smallBig, SMALL_DUE, BIG_HISTORY);
  const h0: number[] = [];
  const hBig: number[] = [];
  const c0: number[] = [];
  const cBig: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    log(`history scaling ${i + 1}/${REPEAT}`);
    h0.push((await withCopy(small0, (url) => autoStart(url, SMALL_DUE))).ms);
    hBig.push((await withCopy(smallBig, (url) => autoStart(url, SMALL_DUE))).ms);
    c0.push((await withCopy(small0, (url) => ceiling(url, SMALL_DUE))).ms);
    cBig.push((await withCopy(smallBig, (url) => ceiling(url, SMALL_DUE))).ms);
  }

  const rate = (ms: number, n = DUE) => n / (ms / 1000);
  const autoRate = rate(median(a));
  const perRowRate = rate(b.ms);
  const ceilingRate = rate(median(c));
  const result = {
    machine,
    dataset: {
      due: DUE,
      history: HISTORY,
      batch_size: Number(process.env['AUTO_START_BATCH_SIZE'] ?? loadConfig({}).autoStartBatchSize),
      repeat: REPEAT,
    },
    auto_start: { ms: round(median(a)), per_second: Math.round(autoRate), batches, runs_ms: a.map((x) => round(x)) },
    per_row_port: { ms: round(b.ms), per_second: Math.round(perRowRate), runs_of_50: b.runs },
    ceiling_single_statement: { ms: round(median(c)), per_second: Math.round(ceilingRate), runs_ms: c.map((x) => round(x)) },
    notification_delivery_after_run: {
      ms: round(median(delivery)),
      notifications: DUE * 2,
      per_second: Math.round((DUE * 2) / (median(delivery) / 1000)),
    },
    ratios: {
      auto_start_vs_per_row: round(autoRate / perRowRate, 2),
      auto_start_vs_ceiling: round(autoRate / ceilingRate, 3),
      history_1m_vs_0: round(median(hBig) / median(h0), 3),
      ceiling_history_1m_vs_0: round(median(cBig) / median(c0), 3),
    },
    history_scaling: {
      due: SMALL_DUE,
      history_0_ms: round(median(h0)),
      [`history_${BIG_HISTORY}_ms`]: round(median(hBig)),
      runs_0_ms: h0.map((x) => round(x)),
      runs_big_ms: hBig.map((x) => round(x)),
      ceiling_history_0_ms: round(median(c0)),
      [`ceiling_history_${BIG_HISTORY}_ms`]: round(median(cBig)),
    },
    targets: {
      'auto_start ≥ 40× per-row': autoRate / perRowRate >= 40,
      'auto_start ≥ 50 % of ceiling': autoRate / ceilingRate >= 0.5,
      '1M-history / 0-history ≤ 1.2×': median(hBig) / median(h0) <= 1.2,
    },
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n\n`);
  const rows: [string, string, string, string][] = [
    ['case', 'time', 'sessions/s', 'ratio'],
    [`auto-start (${DUE} due / ${HISTORY} history)`, `${round(median(a))} ms`, String(Math.round(autoRate)), '1.00'],
    [
      'per-row port (original algorithm)',
      `${round(b.ms)} ms`,
      String(Math.round(perRowRate)),
      `auto-start is ${round(autoRate / perRowRate, 1)}×`,
    ],
    [
      'ceiling (one INSERT … SELECT)',
      `${round(median(c))} ms`,
      String(Math.round(ceilingRate)),
      `auto-start is ${round((100 * autoRate) / ceilingRate, 1)} %`,
    ],
    [`auto-start, ${SMALL_DUE} due, 0 history`, `${round(median(h0))} ms`, String(Math.round(rate(median(h0), SMALL_DUE))), ''],
    [
      `auto-start, ${SMALL_DUE} due, ${BIG_HISTORY} history`,
      `${round(median(hBig))} ms`,
      String(Math.round(rate(median(hBig), SMALL_DUE))),
      `${round(median(hBig) / median(h0), 2)}× the 0-history time`,
    ],
    [`ceiling, ${SMALL_DUE} due, 0 history`, `${round(median(c0))} ms`, String(Math.round(rate(median(c0), SMALL_DUE))), ''],
    [
      `ceiling, ${SMALL_DUE} due, ${BIG_HISTORY} history`,
      `${round(median(cBig))} ms`,
      String(Math.round(rate(median(cBig), SMALL_DUE))),
      `${round(median(cBig) / median(c0), 2)}× the 0-history time`,
    ],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const [i, r] of rows.entries()) {
    process.stdout.write(`${r.map((cell, j) => cell.padEnd(widths[j]!)).join('  ')}\n`);
    if (i === 0) process.stdout.write(`${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    await main();
  } finally {
    for (const name of created.reverse()) await dropDb(name).catch(() => {});
  }
}
