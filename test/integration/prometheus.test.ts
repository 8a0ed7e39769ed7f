/**
 * A real Prometheus (Debian's /usr/bin/prometheus) scrapes a listening sessiongate every second
 * with the shipped rules (ops/prometheus/alerts.yml). A legacy chat request refused with
 * SESSION_CONTEXT_REQUIRED (SPEC §3.2: ENFORCE_SESSION_GATED_CHAT=true, appointment with a session)
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
import { createHarness, type TestHarness } from '../helpers/app.js';

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
    const res = await fetch(`${promUrl}/api/v2/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as {
      status: string;
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      error?: string;
    };
    if (body.status !== 'success') throw new Error(`query failed: ${body.error}`);
    return body.data.result;
  }

  const rulesHealth = async () => {
    const res = await fetch(`${promUrl}/api/v2/v1/rules`);
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
        const res = await fetch(`${promUrl}/api/v2/v1/alerts`);
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
