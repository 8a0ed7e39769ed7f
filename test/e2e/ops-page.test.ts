/**
 * The /ops page in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
 * it loads with an admin token, shows the numbers the summary API returns, refuses to show anything
 * without a valid admin token, keeps the token out of the address bar, and runs under its strict
 * Content-Security-Policy. A screenshot goes to test-results/ops.png.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { User } from '../../src/db/types.js';
import type { OpsSummary } from '../../src/modules/ops/schemas.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const RESULTS = join(import.meta.dirname, '..', '..', 'test-results');

if (!hasChromium) {
  // Not silent: the reason is printed in the run's output.
  console.warn(`[ops-page] skipped: ${CHROMIUM} is not installed (apt-get install -y chromium)`);
}

describe.skipIf(!hasChromium)('/ops in headless Chromium', () => {
  let t: TestHarness;
  let browser: Browser;
  let base: string;
  let admin: User;
  let adminToken: string;

  beforeAll(async () => {
    t = await createHarness({ flags: { ENFORCE_SESSION_GATED_CHAT: true } });
    const db = t.ctx.db;
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    admin = await t.newAdmin();
    adminToken = await t.token(admin);

    // A backlog: 12 appointments due for 10 minutes (warning), 3 due for a minute, one given up.
    await sql`
      insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at, conversion_attempts)
      select ${patient.id}, ${doctor.id}, 'text', 'confirmed',
             now() - make_interval(mins => case when i <= 12 then 10 else 1 end) - make_interval(secs => i),
             case when i = 1 then 5 else 0 end
        from generate_series(1, 15) as i`.execute(db);
    // The last of them waits for its patient's live session (deferred); one more is stale (2 days
    // old, past the 24 h lateness); three sessions ended in the last day, one two days ago.
    await sql`
      update appointments set last_conversion_error = 'deferred_patient_busy'
       where id = (select max(id) from appointments where patient_id = ${patient.id})`.execute(db);
    await sql`
      insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
      values (${patient.id}, ${doctor.id}, 'text', 'confirmed', now() - interval '2 days')`.execute(db);
    await sql`
      insert into sessions (kind, modality, source, patient_id, doctor_id, status, activated_at, ended_at, end_reason)
      values ('text', 'text', 'INSTANT', ${patient.id}, ${doctor.id}, 'active', now() - interval '3 minutes', null, null),
             ('text', 'text', 'INSTANT', ${patient.id}, ${doctor.id}, 'ended', now() - interval '2 hours', now() - interval '1 hour', 'inactive'),
             ('text', 'text', 'INSTANT', ${patient.id}, ${doctor.id}, 'ended', now() - interval '3 hours', now() - interval '2 hours', 'inactive'),
             ('text', 'text', 'INSTANT', ${patient.id}, ${doctor.id}, 'ended', now() - interval '4 hours', now() - interval '3 hours', 'time_limit'),
             ('text', 'text', 'INSTANT', ${patient.id}, ${doctor.id}, 'ended', now() - interval '50 hours', now() - interval '49 hours', 'disconnected')`.execute(
      db,
    );
    // Conversions over the last hour and guard events by operation.
    const a = await t.newAppointment({ status: 'completed', scheduled_at: new Date(Date.now() - 86_400_000) });
    await sql`
      insert into appointment_conversions (appointment_id, source, result, failure_reason, created_at)
      select ${a.id}, 'auto_start', case when i % 10 = 0 then 'failed' else 'created' end,
             case when i % 10 = 0 then 'db_update_failed' end,
             now() - make_interval(secs => i * 60)
        from generate_series(1, 40) as i`.execute(db);
    await sql`
      insert into guard_events (guard, operation, outcome, enforced, appointment_id, created_at)
      values ('chat', 'getMessages', 'blocked', true, ${a.id}, now() - interval '1 hour'),
             ('chat', 'getMessages', 'blocked', true, ${a.id}, now() - interval '2 hours'),
             ('chat', 'sendMessage', 'would_block', false, ${a.id}, now() - interval '30 hours'),
             ('billing', 'end-session', 'would_block', false, ${a.id}, now() - interval '3 hours')`.execute(db);
    await sql`
      insert into job_runs (run_id, job, started_at, finished_at, duration_ms, status, selected, created, failed)
      values (gen_random_uuid(), 'appointments:auto-start-sessions', now() - interval '2 minutes', now(), 42, 'succeeded', 10, 9, 1),
             (gen_random_uuid(), 'appointments:activate-booked', now() - interval '1 minute', now(), 7, 'succeeded', 2, 2, 0)`.execute(db);

    await t.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 30_000,
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  async function summary(): Promise<OpsSummary> {
    const res = await t.app.inject({ url: '/api/v2/admin/ops/summary', headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.statusCode).toBe(200);
    return res.json().data as OpsSummary;
  }

  async function openPage(url: string): Promise<{ page: Page; violations: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const violations: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    page.on('pageerror', (e) => violations.push(`page error: ${e.message}`));
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 15_000 });
    return { page, violations };
  }

  const text = (page: Page, testid: string) => page.locator(`[data-testid="${testid}"]`).first().textContent({ timeout: 10_000 });

  it('serves the shell with a strict, nonce-based Content-Security-Policy', async () => {
    const res = await t.app.inject('/ops');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
    const csp = String(res.headers['content-security-policy']);
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeTruthy();
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.body).toContain(`<script nonce="${nonce}">`);
    expect(res.headers['cache-control']).toBe('no-store');
    // The shell carries no data; a second load gets a fresh nonce.
    expect(res.body).not.toContain('db_update_failed');
    const again = await t.app.inject('/ops');
    expect(again.headers['content-security-policy']).not.toBe(csp);
  });

  it('shows the numbers the summary API returns, and takes the token out of the address bar', async () => {
    const { page, violations } = await openPage(`${base}/ops?token=${adminToken}`);
    try {
      await page.locator('[data-testid="dashboard"]').waitFor({ state: 'visible', timeout: 15_000 });
      await page.locator('[data-testid="job-run"]').first().waitFor({ timeout: 10_000 });
      const s = await summary();
      const m = s.monitor;

      expect(page.url()).toBe(`${base}/ops`);
      expect(await text(page, 'phase')).toBe(String(s.rollout.phase));
      expect(await text(page, 'phase')).toBe('2');
      for (const f of s.rollout.flag_status) {
        const row = page.locator(`[data-testid="flag-${f.flag}"]`);
        expect(await row.getAttribute('data-value')).toBe(String(f.value));
        expect(await row.textContent()).toContain(f.verdict);
      }
      expect(await text(page, 'due-count')).toBe(String(m.due.count));
      expect(m.due.count).toBe(15);
      expect(await text(page, 'due-sustained')).toBe(String(m.due.due_for_5m));
      expect(await text(page, 'due-given-up')).toBe(String(m.due.given_up));
      expect(await text(page, 'backlog-level')).toBe(m.backlog.level);
      expect(m.backlog.level).toBe('warning');
      expect(await text(page, 'backlog-trend')).toBe(s.backlog_trend.direction);
      expect(await page.locator('[data-testid="backlog-trend-bars"] > div').count()).toBe(s.backlog_trend.points.length);

      expect(await text(page, 'conversions-created-1h')).toBe(String(s.conversions_last_hour.created));
      expect(await text(page, 'conversions-failed-1h')).toBe(String(s.conversions_last_hour.failed));
      expect(s.conversions_last_hour).toMatchObject({ created: 36, failed: 4 });
      expect(await text(page, 'error-rate-10m')).toBe(`${(m.error_rate.last_10m * 100).toFixed(2)} %`);
      expect(await text(page, 'error-rate-level')).toBe(m.error_rate_alert.level);
      expect(await page.locator('[data-testid="failure-reason"][data-reason="db_update_failed"]').textContent()).toContain('4');

      expect(await text(page, 'chat-blocked')).toBe(String(m.guards.chat.blocked));
      expect(await text(page, 'chat-would-block')).toBe(String(m.guards.chat.would_block));
      expect(await text(page, 'billing-would-block')).toBe(String(m.guards.billing.would_block));
      expect(m.guards.chat.blocked).toBe(2);
      const guardRow = page.locator('[data-testid="guard-row"][data-guard="chat"][data-operation="getMessages"]');
      expect(await guardRow.textContent()).toContain('2');

      expect(await text(page, 'deferred-waiting')).toBe(String(m.deferred.waiting));
      expect(m.deferred.waiting).toBe(1);
      expect(await text(page, 'stale-count')).toBe(String(m.stale.count));
      expect(m.stale.count).toBe(1);
      expect(await text(page, 'stale-days')).toBe('7');
      expect(await text(page, 'sessions-ended-total')).toBe('3');
      expect(await page.locator('[data-testid="ended-reason"][data-reason="inactive"]').textContent()).toContain('2');
      expect(await page.locator('[data-testid="ended-reason"][data-reason="time_limit"]').textContent()).toContain('1');
      expect(await page.locator('[data-testid="ended-reason"][data-reason="disconnected"]').count()).toBe(0);

      expect(await page.locator('[data-testid="job-run"]').count()).toBe(s.recent_job_runs.length);
      expect(await page.locator('[data-testid="legacy-trigger"][data-command="appointments:activate-booked"]').textContent()).toContain(
        'appointments:activate-booked',
      );
      expect(await text(page, 'refresh-status')).toMatch(/auto-refresh every 10 s/);
      expect(await page.locator('[data-testid="signin"]').isHidden()).toBe(true);

      mkdirSync(RESULTS, { recursive: true });
      await page.screenshot({ path: join(RESULTS, 'ops.png'), fullPage: true });
      expect(existsSync(join(RESULTS, 'ops.png'))).toBe(true);
      expect(violations).toEqual([]);

      // The token now lives in the tab's sessionStorage: a reload without ?token= still works.
      await page.reload({ waitUntil: 'domcontentloaded' });
      await page.locator('[data-testid="dashboard"]').waitFor({ state: 'visible', timeout: 15_000 });
      expect(await text(page, 'due-count')).toBe('15');
    } finally {
      await page.close();
    }
  });

  it('refreshes by itself: a new due appointment appears without a reload', async () => {
    const { page } = await openPage(`${base}/ops#token=${adminToken}`);
    try {
      await page.locator('[data-testid="dashboard"]').waitFor({ state: 'visible', timeout: 15_000 });
      expect(await text(page, 'due-count')).toBe('15');
      await t.newAppointment({ scheduled_at: new Date(Date.now() - 120_000) });
      await page.waitForFunction(
        () =>
          (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document.querySelector(
            '[data-testid="due-count"]',
          )?.textContent === '16',
        undefined,
        { timeout: 25_000 },
      );
    } finally {
      await page.close();
    }
  }, 40_000);

  it('shows nothing without a valid admin token', async () => {
    const patient = await t.newPatient();
    for (const url of [`${base}/ops`, `${base}/ops?token=not-a-jwt`, `${base}/ops?token=${await t.token(patient)}`]) {
      const { page, violations } = await openPage(url);
      try {
        await page.locator('[data-testid="signin"]').waitFor({ state: 'visible', timeout: 10_000 });
        expect(await page.locator('[data-testid="dashboard"]').isHidden()).toBe(true);
        expect(await text(page, 'due-count')).toBe('');
        expect(await page.locator('[data-testid="job-run"]').count()).toBe(0);
        expect(violations).toEqual([]);
      } finally {
        await page.close();
      }
    }
    // Pasting a valid token shows the dashboard.
    const { page } = await openPage(`${base}/ops`);
    try {
      await page.locator('[data-testid="token-input"]').fill(adminToken);
      await page.locator('[data-testid="token-submit"]').click();
      await page.locator('[data-testid="dashboard"]').waitFor({ state: 'visible', timeout: 10_000 });
      expect(await text(page, 'due-count')).not.toBe('');
    } finally {
      await page.close();
    }
  });

  it('the summary API itself is admin-only', async () => {
    expect((await t.app.inject('/api/v2/admin/ops/summary')).statusCode).toBe(401);
    const patient = await t.newPatient();
    expect((await t.app.inject({ url: '/api/v2/admin/ops/summary', headers: await t.auth(patient) })).statusCode).toBe(403);
  });
});
