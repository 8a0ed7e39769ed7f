/**
 * Billing under concurrency on real PostgreSQL: many parallel requests and several "worker
 * processes" (separate contexts with their own pools) racing on the same sessions,
 * appointments and subscriptions. Every unit must be charged exactly once and the books must
 * balance (billing:audit) afterwards.
 */
import pino from 'pino';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/env.js';
import { FlagService } from '../../src/config/flags.js';
import { closeContext, createContext, type AppContext } from '../../src/context.js';
import type { User } from '../../src/db/types.js';
import { auditBilling } from '../../src/modules/billing/audit.js';
import { runBillingTick } from '../../src/modules/billing/session-billing.js';
import { TEST_JWT_SECRET, createHarness, type TestHarness } from '../helpers/app.js';
import { isPostgres } from '../helpers/db.js';
import { MIN, grant, ledgerOf, liveSession, sessionRow, walletOf } from '../integration/billing-fixtures.js';

describe.skipIf(!isPostgres)('billing under concurrency (PostgreSQL)', () => {
  let t: TestHarness;
  /** Extra contexts: other worker processes sharing the database, each with its own pool. */
  const workers: AppContext[] = [];

  beforeAll(async () => {
    t = await createHarness({ env: { DB_POOL_SIZE: '30' } });
    for (let i = 0; i < 3; i++) {
      const config = loadConfig({ DATABASE_URL: t.database.databaseUrl!, JWT_SECRET: TEST_JWT_SECRET, DB_POOL_SIZE: '10' });
      workers.push(
        await createContext(config, {
          role: `worker-${i}`,
          logger: pino({ level: 'silent' }),
          flags: new FlagService(() => ({})),
          migrate: false,
        }),
      );
    }
  });
  afterAll(async () => {
    for (const w of workers) await closeContext(w);
    await t?.close();
  });

  const post = async (user: User, url: string, payload?: Record<string, unknown>, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'POST', url, headers: { ...(await t.auth(user)), ...headers }, ...(payload === undefined ? {} : { payload }) });

  it('50 concurrent ends of one session → one settlement, each unit charged once', async () => {
    const live = await liveSession(t, { modality: 'voice', credits: { voice: 10 }, startedAgoMs: 25 * MIN });
    const [patientHeaders, doctorHeaders] = [await t.auth(live.patient), await t.auth(live.doctor)];
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        t.app.inject({ method: 'POST', url: `/api/v2/sessions/${live.context}/end`, headers: i % 2 ? patientHeaders : doctorHeaders }),
      ),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(50).fill(200));
    const s = await sessionRow(t, live.session.id);
    expect(s).toMatchObject({ status: 'ended', units_billed: 3 });
    expect((await ledgerOf(t, { session_id: s.id })).map((r) => r.unit_no)).toEqual([1, 2, 3]);
    expect(t.logs.filter((l) => l['event'] === 'session_settled' && l['session_id'] === s.id)).toHaveLength(1);
    expect(await walletOf(t, live.doctor.id)).toMatchObject({ balance_minor: 900 });
    expect(new Set(results.map((r) => r.json().data.ended_at)).size).toBe(1);
  });

  it('20 concurrent legacy end-session calls on one legacy appointment → one charge', async () => {
    const appt = await t.newAppointment({ status: 'in_progress', appointment_type: 'text', scheduled_at: new Date(Date.now() - 30 * MIN) });
    await sql`update appointments set legacy_started_at = now() - interval '25 minutes', legacy_patient_active = true, legacy_doctor_active = true where id = ${appt.id}`.execute(t.ctx.db);
    await grant(t, appt.patient, { text: 10 });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post(i % 2 ? appt.patient : appt.doctor, `/api/v2/appointments/${appt.id}/end-session`)),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(20).fill(200));
    expect(results.filter((r) => r.json().data.already_processed === false)).toHaveLength(1);
    expect(results.reduce((n, r) => n + (r.json().data.units_charged as number), 0)).toBe(3);
    expect(await ledgerOf(t, { appointment_id: appt.id })).toHaveLength(3);
    expect(await walletOf(t, appt.doctor.id)).toMatchObject({ balance_minor: 900 });
  });

  it('20 concurrent deductions with one Idempotency-Key → one deduction, the same answer for all', async () => {
    const appt = await t.newAppointment({ status: 'in_progress', appointment_type: 'text', scheduled_at: new Date(Date.now() - 30 * MIN) });
    await sql`update appointments set legacy_started_at = now() - interval '25 minutes', legacy_patient_active = true, legacy_doctor_active = true where id = ${appt.id}`.execute(t.ctx.db);
    await grant(t, appt.patient, { text: 10 });
    const body = { appointment_id: appt.id, sessions_to_deduct: 2, reason: 'interval' };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => post(appt.patient, '/api/v2/text-appointments/process-deduction', body, { 'idempotency-key': 'same' })),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(20).fill(200));
    expect(new Set(results.map((r) => r.body)).size).toBe(1);
    expect(results.filter((r) => r.headers['idempotent-replayed'] === 'false')).toHaveLength(1);
    expect(await ledgerOf(t, { appointment_id: appt.id })).toHaveLength(2);
    // Without a key, many concurrent deductions are still capped by the elapsed-time rule (3).
    const more = await Promise.all(Array.from({ length: 20 }, () => post(appt.patient, '/api/v2/text-appointments/process-deduction', body)));
    expect(more.every((r) => r.statusCode === 200)).toBe(true);
    expect(await ledgerOf(t, { appointment_id: appt.id })).toHaveLength(3);
  });

  it('the worker racing ends, legacy delegations and other workers → each unit once', async () => {
    const sessions = await Promise.all(
      [5, 12, 25, 31, 47].map((m, i) =>
        liveSession(t, {
          modality: i % 2 ? 'text' : 'video',
          credits: { text: 10, video: 10 },
          startedAgoMs: m * MIN,
          fromAppointment: true,
        }),
      ),
    );
    // floor(m / 10) + 1 at the end, capped by the 30-minute booking: ceil(30 / 10) = 3 (the overrun is never billed).
    const expected = [1, 2, 3, 3, 3];
    const ends = sessions.flatMap((s) =>
      Array.from({ length: 6 }, async (_, i) =>
        t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/end`, headers: await t.auth(i % 2 ? s.patient : s.doctor) }),
      ),
    );
    const legacy = sessions.flatMap((s) => [
      post(s.patient, `/api/v2/appointments/${s.appointmentId}/end-session`),
      post(s.doctor, `/api/v2/appointments/${s.appointmentId}/process-payment`),
    ]);
    const ticks = [t.ctx, ...workers, ...workers].map((c) => runBillingTick(c));
    const responses = await Promise.all([...ends, ...legacy]);
    await Promise.all(ticks);
    expect(responses.every((r) => r.statusCode === 200)).toBe(true);
    for (const [i, live] of sessions.entries()) {
      const s = await sessionRow(t, live.session.id);
      expect(s.status).toBe('ended');
      // Periodic charges can only have covered completed units, so the total is the end rule.
      expect(s.units_billed).toBe(expected[i]);
      expect((await ledgerOf(t, { session_id: s.id })).map((r) => r.unit_no)).toEqual(
        Array.from({ length: expected[i]! }, (_, k) => k + 1),
      );
      expect(await ledgerOf(t, { appointment_id: live.appointmentId! })).toEqual([]);
    }
  });

  it('several workers ticking the same running sessions at once charge each completed unit once, and end the exhausted ones', async () => {
    const lives = [];
    for (let i = 0; i < 30; i++) {
      const patient = await t.newPatient();
      await grant(t, patient, { text: (i % 4) + 1 }, 10); // 1–4 credits over two stacked subscriptions
      await grant(t, patient, { text: i % 2 }, 20);
      lives.push(await liveSession(t, { modality: 'text', patient, startedAgoMs: (5 + i * 2) * MIN }));
    }
    await Promise.all([t.ctx, ...workers].flatMap((c) => [runBillingTick(c), runBillingTick(c)]));
    await Promise.all([t.ctx, ...workers].map((c) => runBillingTick(c)));
    for (const [i, live] of lives.entries()) {
      const credits = (i % 4) + 1 + (i % 2);
      const completed = Math.floor((5 + i * 2) / 10);
      const s = await sessionRow(t, live.session.id);
      const rows = await ledgerOf(t, { session_id: s.id });
      expect(rows.map((r) => r.unit_no)).toEqual(Array.from({ length: s.units_billed }, (_, k) => k + 1));
      if (completed >= credits) {
        expect(s).toMatchObject({ status: 'ended', end_reason: 'credits_exhausted', units_billed: credits });
        expect(s.ended_at!.getTime()).toBe(s.activated_at!.getTime() + credits * 10 * MIN);
      } else {
        expect(s).toMatchObject({ status: 'active', units_billed: completed });
      }
    }
  });

  it('one patient spending from the same subscriptions in parallel (a session and a legacy appointment) never overdraws', async () => {
    const patient = await t.newPatient();
    await grant(t, patient, { text: 2 }, 10);
    await grant(t, patient, { text: 2 }, 20);
    const live = await liveSession(t, { modality: 'text', patient, startedAgoMs: 45 * MIN });
    const appt = await t.newAppointment({
      patient,
      status: 'in_progress',
      appointment_type: 'text',
      scheduled_at: new Date(Date.now() - 60 * MIN),
    });
    await sql`update appointments set legacy_started_at = now() - interval '50 minutes', duration_minutes = 60, legacy_patient_active = true, legacy_doctor_active = true where id = ${appt.id}`.execute(
      t.ctx.db,
    );
    const deductions = Array.from({ length: 10 }, (_, i) =>
      post(
        patient,
        '/api/v2/text-appointments/process-deduction',
        { appointment_id: appt.id, sessions_to_deduct: 1, reason: 'interval' },
        { 'idempotency-key': `p-${i}` },
      ),
    );
    const ticks = [t.ctx, ...workers].map((c) => runBillingTick(c));
    const res = await Promise.all(deductions);
    await Promise.all(ticks);
    await runBillingTick(t.ctx); // the next tick sees the credits gone, whoever spent them
    expect(res.every((r) => r.statusCode === 200 || r.statusCode === 402)).toBe(true);
    const used = (await ledgerOf(t, { session_id: live.session.id })).length + (await ledgerOf(t, { appointment_id: appt.id })).length;
    expect(used).toBe(4);
    const subs = await t.ctx.db.selectFrom('subscriptions').select('text_remaining').where('patient_id', '=', patient.id).execute();
    expect(subs.map((s) => s.text_remaining)).toEqual([0, 0]);
    expect((await sessionRow(t, live.session.id)).status).toBe('ended');
  });

  it('the books balance after all of it', async () => {
    const report = await auditBilling(t.ctx.db);
    expect(report.findings).toEqual([]);
    expect(report.checked.ledger_entries).toBeGreaterThan(50);
  });
});
