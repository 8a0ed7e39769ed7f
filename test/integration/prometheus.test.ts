/**
 * A real Prometheus (Debian's /usr/bin/prometheus) scrapes a listening sessiongate every second
 * with the shipped rules (ops/prometheus/alerts.yml). A legacy chat request refused with
 * SESSION_CONTEXT_REQUIRED (ENFORCE_SESSION_GATED_CHAT=true, appointment with a session)
 * must show up in a PromQL query, and ChatBlockedRatioHigh must become pending.
 *
 * The real rules file is used unchanged: with a 1 s evaluation interval the alert turns *pending*
 * at the first evaluation where blocked / all chat requests over 5 minutes exceeds 10 % — its
 * `for: 5m` only delays *firing*, which this test does not wait for. The counters exist at 0 from
 * the first scrape (label sets are initialised), so `rate()` sees the increase.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/index.js';
import { TEST_JWT_SECRET, createHarness, type TestHarness } from '../helpers/app.js';
import { cloneTestDatabase, isPostgres, type TestDatabase } from '../helpers/db.js';
import { spawnCli, waitForStatus, type Spawned } from '../helpers/process.js';

const PROMETHEUS = '/usr/bin/prometheus';
const RULES = join(import.meta.dirname, '..', '..', 'ops', 'prometheus', 'alerts.yml');
const hasPrometheus = existsSync(PROMETHEUS);
if (!hasPrometheus) console.warn(`[prometheus] skipped: ${PROMETHEUS} is not installed (apt-get install -y prometheus)`);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value (not undefined) or `ms` pass; then fails with `what`. */
async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>, diagnose?: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + ms;
  let lastError = '';
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      const extra = diagnose ? await diagnose().catch((e: unknown) => String(e)) : '';
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}${extra ? `\n${extra}` : ''}`,
      );
    }
    await sleep(250);
  }
}

describe.skipIf(!hasPrometheus)('Prometheus scrapes sessiongate and evaluates the shipped alerts', () => {
  let t: TestHarness;
  let prom: ChildProcess | null = null;
  let promUrl = '';
  let appUrl = '';
  let dir = '';
  let promLog = '';

  beforeAll(async () => {
    t = await createHarness({ flags: { ENFORCE_SESSION_GATED_CHAT: true } });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    appUrl = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;

    dir = mkdtempSync(join(tmpdir(), 'sg-prometheus-'));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(RULES)}`,
        'scrape_configs:',
        '  - job_name: sessiongate',
        '    metrics_path: /metrics',
        '    static_configs:',
        `      - targets: [${JSON.stringify(appUrl.replace('http://', ''))}]`,
        '',
      ].join('\n'),
    );
    prom = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (b: Buffer) => {
      promLog = (promLog + b.toString()).slice(-4000);
    };
    prom.stdout?.on('data', keep);
    prom.stderr?.on('data', keep);
    await waitFor('Prometheus to be ready', 20_000, async () => {
      if (prom?.exitCode !== null) throw new Error(`prometheus exited with ${prom?.exitCode}: ${promLog}`);
      return (await fetch(`${promUrl}/-/ready`)).ok ? true : undefined;
    });
  }, 60_000);

  afterAll(async () => {
    if (prom && prom.exitCode === null) {
      const exited = new Promise<void>((r) => prom!.once('exit', () => r()));
      prom.kill('SIGTERM');
      const timedOut = await Promise.race([exited.then(() => false), sleep(5_000).then(() => true)]);
      if (timedOut) {
        prom.kill('SIGKILL');
        await Promise.race([exited, sleep(2_000)]);
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    await t?.close();
  }, 20_000);

  async function query(promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as {
      status: string;
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      error?: string;
    };
    if (body.status !== 'success') throw new Error(`query failed: ${body.error}`);
    return body.data.result;
  }

  const rulesHealth = async () => {
    const res = await fetch(`${promUrl}/api/v1/rules`);
    const body = (await res.json()) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string; state?: string }[] }[] };
    };
    return JSON.stringify(
      body.data.groups.flatMap((g) => g.rules.map((r) => ({ name: r.name, health: r.health, state: r.state, lastError: r.lastError }))),
    );
  };

  it('a blocked legacy chat request shows up in PromQL and turns ChatBlockedRatioHigh pending', async () => {
    // The target is up and the zero-initialised counter has been scraped (the "before" sample).
    await waitFor('the sessiongate target to be up', 15_000, async () =>
      (await query('up{job="sessiongate"} == 1')).length === 1 ? true : undefined,
    );
    await waitFor('a first sample of the blocked-chat counter', 10_000, async () =>
      (await query('chat_blocked_session_context_required_total{enforced="true",operation="getMessages"}')).length > 0 ? true : undefined,
    );
    const rules = JSON.parse(await rulesHealth()) as { name: string; health: string }[];
    expect(rules.map((r) => r.name)).toContain('ChatBlockedRatioHigh');
    expect(rules.every((r) => r.health !== 'err')).toBe(true);

    // An appointment that already has a session (the session row is inserted directly).
    const patient = await t.newPatient();
    const appt = await t.newAppointment({ patient, scheduled_at: new Date(Date.now() - 5 * 60_000) });
    const session = await t.ctx.db
      .insertInto('sessions')
      .values({
        kind: 'text',
        modality: 'text',
        source: 'APPOINTMENT',
        appointment_id: appt.id,
        patient_id: patient.id,
        doctor_id: appt.doctor_id,
        status: 'active',
        activated_at: new Date(),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await t.ctx.db.updateTable('appointments').set({ session_id: session.id, status: 'in_progress' }).where('id', '=', appt.id).execute();

    // Old clients address chat by appointment id: refused with 400 SESSION_CONTEXT_REQUIRED.
    // A few requests over a couple of scrapes, so rate() sees the counter move between samples.
    const headers = await t.auth(patient);
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${appUrl}/api/v2/chat/${appt.id}/messages`, { headers });
      expect(res.status).toBe(400);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({
        success: false,
        error_code: 'SESSION_CONTEXT_REQUIRED',
        session_id: session.id,
        session_context: `text_session:${session.id}`,
      });
      await sleep(1_200);
    }

    const series = await waitFor('the blocked request in PromQL', 15_000, async () => {
      const r = await query('sum by (operation) (chat_blocked_session_context_required_total{job="sessiongate",enforced="true"}) > 0');
      return r.length > 0 ? r : undefined;
    });
    expect(series).toEqual([expect.objectContaining({ metric: { operation: 'getMessages' } })]);
    expect(Number(series[0]!.value[1])).toBe(3);

    const alert = await waitFor(
      'ChatBlockedRatioHigh to become pending',
      20_000,
      async () => {
        const res = await fetch(`${promUrl}/api/v1/alerts`);
        const body = (await res.json()) as {
          data: { alerts: { labels: Record<string, string>; state: string; annotations: Record<string, string> }[] };
        };
        return body.data.alerts.find(
          (a) => a.labels['alertname'] === 'ChatBlockedRatioHigh' && (a.state === 'pending' || a.state === 'firing'),
        );
      },
      async () => `rules: ${await rulesHealth()}\nprometheus log: ${promLog}`,
    );
    expect(alert.state).toBe('pending');
    expect(alert.labels).toMatchObject({ severity: 'critical', job: 'sessiongate' });
    expect(alert.annotations['runbook_url']).toBe('docs/runbooks/alerts.md#chatblockedratiohigh');
  }, 90_000);
});

/** A Prometheus of its own with the shipped rules and the given scrape jobs (YAML lines); stopped by `stop()`. */
async function startPrometheus(scrapeConfigs: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'sg-prometheus-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let log = '';
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      'rule_files:',
      `  - ${JSON.stringify(RULES)}`,
      'scrape_configs:',
      ...scrapeConfigs,
      '',
    ].join('\n'),
  );
  const child = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keep = (b: Buffer) => {
    log = (log + b.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const api = async <T>(path: string): Promise<T> => {
    const body = (await (await fetch(`${url}${path}`)).json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${path} failed: ${body.error}`);
    return body.data;
  };
  const prom = {
    log: () => log,
    query: async (promql: string) =>
      (
        await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(
          `/api/v1/query?query=${encodeURIComponent(promql)}`,
        )
      ).result,
    alerts: async () =>
      (await api<{ alerts: { labels: Record<string, string>; state: string; value: string }[] }>('/api/v1/alerts')).alerts,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        if (await Promise.race([exited.then(() => false), sleep(5_000).then(() => true)])) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor('Prometheus to be ready', 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${log}`);
      return (await fetch(`${url}/-/ready`)).ok ? true : undefined;
    });
  } catch (err) {
    await prom.stop();
    throw err;
  }
  return prom;
}

/**
 * The documented production shape: `sessiongate serve` and `sessiongate worker` as separate
 * processes on one PostgreSQL, both scraped under one job with a `role` label (as
 * ops/prometheus/prometheus.yml ships). Conversions fail in the worker only, so the conversion
 * error-rate alert can only come from the worker's /metrics; the backlog is read from the
 * database by both processes and must not be counted twice.
 */
describe.skipIf(!hasPrometheus || !isPostgres)('Prometheus scrapes a split deployment (serve + worker processes)', () => {
  let db: TestDatabase;
  let prom: Awaited<ReturnType<typeof startPrometheus>> | null = null;
  const procs: Spawned[] = [];
  let serveUrl = '';
  let workerUrl = '';

  beforeAll(async () => {
    db = await cloneTestDatabase();
    const env = { DATABASE_URL: db.databaseUrl!, JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: 'warn', AUTO_START_INTERVAL_SECONDS: '1' };
    const apiPort = await freePort();
    const metricsPort = await freePort();
    serveUrl = `http://127.0.0.1:${apiPort}`;
    workerUrl = `http://127.0.0.1:${metricsPort}`;
    procs.push(spawnCli(['serve'], { ...env, PORT: String(apiPort) }));
    procs.push(spawnCli(['worker'], { ...env, METRICS_PORT: String(metricsPort) }));
    for (const [url, p] of [
      [serveUrl, procs[0]!],
      [workerUrl, procs[1]!],
    ] as const) {
      if (!(await waitForStatus(`${url}/health/ready`, 200, 120_000))) throw new Error(`not ready: ${url}\n${p.stderr()}`);
    }
    prom = await startPrometheus([
      '  - job_name: sessiongate',
      '    metrics_path: /metrics',
      '    static_configs:',
      '      - labels: { role: api }',
      `        targets: [${JSON.stringify(serveUrl.replace('http://', ''))}]`,
      '      - labels: { role: worker }',
      `        targets: [${JSON.stringify(workerUrl.replace('http://', ''))}]`,
    ]);
  }, 240_000);

  afterAll(async () => {
    await prom?.stop();
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => Promise.race([p.exited, sleep(15_000).then(() => p.child.kill('SIGKILL'))])));
    await db?.drop();
  }, 60_000);

  it('scrapes both processes; a worker-side alert (conversion errors) and the backlog turn pending, the backlog counted once', async () => {
    const p = prom!;
    await waitFor('both targets to be up', 30_000, async () =>
      (await p.query('up{job="sessiongate"} == 1')).length === 2 ? true : undefined,
    );
    // The worker's listener answers like the API's: metrics, liveness, readiness.
    expect((await fetch(`${workerUrl}/health/live`)).status).toBe(200);
    expect(await (await fetch(`${workerUrl}/health/ready`)).json()).toEqual({ status: 'ok', database: 'postgres' });
    // A first sample of the worker's failure counter at 0 (the "before" of increase()).
    await waitFor('the worker failure counter', 20_000, async () =>
      (await p.query('appointment_session_conversion_failed_total{role="worker",reason="invalid_appointment_state"}')).length > 0
        ? true
        : undefined,
    );

    // 12 due appointments the worker cannot convert (an unknown appointment type).
    const conn = await openDatabase({ databaseUrl: db.databaseUrl, dataDir: '' });
    try {
      await sql`
        with p as (insert into users (role, name) values ('patient', 'P') returning id),
             d as (insert into users (role, name) values ('doctor', 'D') returning id)
        insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
        select p.id, d.id, 'telepathy', 'confirmed', now() - make_interval(mins => 10 + i)
          from p, d, generate_series(1, 12) as i`.execute(conn.db);
    } finally {
      await conn.close();
    }

    const failed = await waitFor('the worker to record the failures', 60_000, async () => {
      const r = await p.query('sum by (role) (appointment_session_conversion_failed_total{job="sessiongate"}) > 0');
      return r.length > 0 ? r : undefined;
    });
    expect(failed.map((s) => s.metric['role'])).toEqual(['worker']);
    // Both processes read the backlog from the database: 12 on each, 12 in the alert.
    const due = await waitFor('the backlog on both processes', 30_000, async () => {
      const r = await p.query('appointments_due_count{job="sessiongate"} == 12');
      return r.length === 2 ? r : undefined;
    });
    expect(due.map((s) => s.metric['role']).sort()).toEqual(['api', 'worker']);
    expect((await p.query('job_run_duration_seconds_count{role="worker",job_name="appointments:auto-start-sessions"}')).length).toBe(1);

    const alerts = await waitFor(
      'ConversionErrorRateCritical and AppointmentBacklogWarning to become pending',
      60_000,
      async () => {
        const a = await p.alerts();
        const names = new Set(a.filter((x) => x.state === 'pending' || x.state === 'firing').map((x) => x.labels['alertname']));
        return names.has('ConversionErrorRateCritical') && names.has('AppointmentBacklogWarning') ? a : undefined;
      },
      async () => `prometheus log: ${p.log()}`,
    );
    const backlog = alerts.filter((a) => a.labels['alertname'] === 'AppointmentBacklogWarning');
    expect(backlog).toHaveLength(1);
    expect(Number(backlog[0]!.value)).toBe(12);
    expect(backlog[0]!.labels).toMatchObject({ job: 'sessiongate', severity: 'warning' });
    expect(backlog[0]!.labels['role']).toBeUndefined();
    expect(alerts.filter((a) => a.labels['alertname'] === 'ConversionErrorRateCritical')).toHaveLength(1);
  }, 240_000);
});
