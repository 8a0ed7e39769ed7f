/**
 * Billing through sessions, end to end on a real database: the credit gate at start, the unit
 * rule at the end, FIFO across stacked subscriptions, doctor payouts, the periodic tick, credits
 * running out mid-session, and the read endpoints. Runs on PGlite and PostgreSQL.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditBilling } from '../../src/modules/billing/audit.js';
import { chargeUnits } from '../../src/modules/billing/ledger.js';
import { runBillingTick } from '../../src/modules/billing/session-billing.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { MIN, endVia, grant, grantExpired, ledgerOf, liveSession, remaining, sessionRow, walletOf } from './billing-fixtures.js';

let t: TestHarness;
/** The application clock: frozen while a test needs exact elapsed times, else real time. */
let frozen: Date | null = null;

beforeAll(async () => {
  t = await createHarness({ now: () => frozen ?? new Date() });
});
afterAll(async () => t?.close());

describe('the credit gate at start', () => {
  it('refuses a start without a credit of the modality (402), counting only unexpired subscriptions', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    const headers = await t.auth(patient);
    const start = (modality: string) =>
      t.app.inject({ method: 'POST', url: '/api/v2/sessions', headers, payload: { doctor_id: doctor.id, modality } });

    const none = await start('text');
    expect(none.statusCode).toBe(402);
    expect(none.json()).toMatchObject({ error_code: 'INSUFFICIENT_CREDITS', modality: 'text' });

    await grantExpired(t, patient, { text: 5 });
    await grant(t, patient, { voice: 2 });
    expect((await start('text')).statusCode).toBe(402);
    expect((await start('video')).statusCode).toBe(402);

    const appt = await t.newAppointment({ patient, doctor: await t.newDoctor(), appointment_type: 'video' });
    const viaAppointment = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/start-session`, headers });
    expect(viaAppointment.statusCode).toBe(402);
    expect(
      (await t.ctx.db.selectFrom('appointments').select('session_id').where('id', '=', appt.id).executeTakeFirstOrThrow()).session_id,
    ).toBeNull();
  });

  it('charges nothing at start', async () => {
    const patient = await t.newPatient();
    const sub = await grant(t, patient, { voice: 2 });
    const { session } = await liveSession(t, { modality: 'voice', patient });
    expect(session.units_billed).toBe(0);
    expect(session.credits_at_start).toBe(2);
    expect(await remaining(t, sub)).toMatchObject({ voice_remaining: 2 });
    expect(await ledgerOf(t, { session_id: session.id })).toEqual([]);
  });
});

describe('the unit rule, end to end (ended through POST /api/v2/sessions/{context}/end)', () => {
  const cases: [string, 'text' | 'voice' | 'video', number | undefined, number][] = [
    // [label, modality, billable time before the end (ms; undefined = never activated/connected), units]
    ['text never activated', 'text', undefined, 0],
    ['text 0 s', 'text', 0, 1],
    ['text 9 min', 'text', 9 * MIN, 1],
    ['text 9:59', 'text', 10 * MIN - 1000, 1],
    ['text 10:00', 'text', 10 * MIN, 2],
    ['text 19 min', 'text', 19 * MIN, 2],
    ['text 25 min', 'text', 25 * MIN, 3],
    ['text 35 min', 'text', 35 * MIN, 4],
    ['voice never connected', 'voice', undefined, 0],
    ['voice 59 s', 'voice', 59_000, 0],
    ['voice 60 s', 'voice', 60_000, 1],
    ['video 9:59', 'video', 10 * MIN - 1000, 1],
    ['video 10:00', 'video', 10 * MIN, 2],
    ['voice 25 min', 'voice', 25 * MIN, 3],
  ];

  const rows = cases.map(([label, modality, ago, units]) => ({ label, modality, ago, units }));
  it.each(rows)('$label → $units unit(s), each a ledger row, a credit and a payout', async ({ modality, ago, units }) => {
    frozen = new Date();
    try {
      const patient = await t.newPatient();
      const sub = await grant(t, patient, { [modality]: 10 });
      const live = await liveSession(t, { modality, patient, startedAgoMs: ago, at: frozen });
      const res = await endVia(t, live.doctor, live.context);
      expect(res.statusCode, res.body).toBe(200);
      const s = await sessionRow(t, live.session.id);
      expect(s.status).toBe('ended');
      expect(s.units_billed).toBe(units);
      expect(s.settled_at).not.toBeNull();
      const rows = await ledgerOf(t, { session_id: s.id });
      expect(rows.map((r) => r.unit_no)).toEqual(Array.from({ length: units }, (_, i) => i + 1));
      expect(rows.every((r) => r.subscription_id === sub && r.modality === modality && r.reason === 'session_end')).toBe(true);
      expect((await remaining(t, sub))[`${modality}_remaining`]).toBe(10 - units);
      const wallet = await walletOf(t, live.doctor.id);
      expect(wallet?.balance_minor ?? 0).toBe(units * 300);
    } finally {
      frozen = null;
    }
  });

  it('an expired text session costs nothing and is settled', async () => {
    const live = await liveSession(t, { modality: 'text', credits: { text: 3 } });
    await sql`update sessions set created_at = now() - interval '2 hours' where id = ${live.session.id}`.execute(t.ctx.db);
    const read = await t.app.inject({ url: `/api/v2/sessions/${live.context}`, headers: await t.auth(live.patient) });
    expect(read.json().data.status).toBe('expired');
    const s = await sessionRow(t, live.session.id);
    expect(s.units_billed).toBe(0);
    expect(s.settled_at).not.toBeNull();
  });
});

describe('stacked subscriptions are spent oldest first', () => {
  it('A (1 credit) and B (5 credits): charging 3 units leaves A 0 and B 3; expired ones are skipped', async () => {
    const patient = await t.newPatient();
    const expired = await grantExpired(t, patient, { text: 4 });
    const a = await grant(t, patient, { text: 1 }, 10);
    const b = await grant(t, patient, { text: 5 }, 30);
    frozen = new Date();
    try {
      const live = await liveSession(t, { modality: 'text', patient, startedAgoMs: 25 * MIN, at: frozen });
      expect((await endVia(t, patient, live.context)).statusCode).toBe(200);
      expect((await remaining(t, a)).text_remaining).toBe(0);
      expect((await remaining(t, b)).text_remaining).toBe(3);
      expect((await remaining(t, expired)).text_remaining).toBe(4);
      expect((await ledgerOf(t, { session_id: live.session.id })).map((r) => r.subscription_id)).toEqual([a, b, b]);
      const credits = await t.app.inject({ url: '/api/v2/me/credits', headers: await t.auth(patient) });
      expect(credits.json().data.balances.text).toBe(3);
    } finally {
      frozen = null;
    }
  });
});

describe('doctor payouts and the wallet', () => {
  it('pays 3500.00 MWK per unit to a doctor in Malawi and 3.00 USD otherwise; GET /api/v2/doctor/wallet pages by keyset', async () => {
    const mw = await t.newDoctor({ country: 'Malawi' });
    frozen = new Date();
    try {
      for (const ago of [25 * MIN, 5 * MIN]) {
        const live = await liveSession(t, { modality: 'video', credits: { video: 5 }, doctor: mw, startedAgoMs: ago, at: frozen });
        expect((await endVia(t, live.patient, live.context)).statusCode).toBe(200);
      }
    } finally {
      frozen = null;
    }
    // 3 + 1 units
    expect(await walletOf(t, mw.id)).toMatchObject({ currency: 'MWK', balance_minor: 4 * 350_000 });
    const headers = await t.auth(mw);
    const page1 = (await t.app.inject({ url: '/api/v2/doctor/wallet?limit=3', headers })).json().data;
    expect(page1).toMatchObject({
      currency: 'MWK',
      balance_minor: 1_400_000,
      balance: '14000.00',
      payout_per_unit: { currency: 'MWK', amount: '3500.00' },
    });
    expect(page1.entries).toHaveLength(3);
    expect(page1.entries[0]).toMatchObject({ amount: '3500.00', currency: 'MWK' });
    expect(page1.next_before).toBe(page1.entries[2].id);
    const page2 = (await t.app.inject({ url: `/api/v2/doctor/wallet?limit=3&before=${page1.next_before}`, headers })).json().data;
    expect(page2.entries).toHaveLength(1);
    expect(page2.next_before).toBeNull();
    const ids = [...page1.entries, ...page2.entries].map((e: { id: number }) => e.id);
    expect(ids).toEqual([...ids].sort((x, y) => y - x));

    const fresh = await t.newDoctor({ country: 'Kenya' });
    const empty = (await t.app.inject({ url: '/api/v2/doctor/wallet', headers: await t.auth(fresh) })).json().data;
    expect(empty).toMatchObject({ currency: 'USD', balance_minor: 0, balance: '0.00', entries: [], next_before: null });
    expect((await t.app.inject({ url: '/api/v2/doctor/wallet', headers: await t.auth(await t.newPatient()) })).statusCode).toBe(403);
  });

  it('a wallet never changes currency: a payout in another currency fails loudly and charges nothing', async () => {
    const doctor = await t.newDoctor({ country: 'MW' });
    const first = await liveSession(t, { modality: 'text', credits: { text: 5 }, doctor, startedAgoMs: 1 * MIN });
    expect((await endVia(t, first.patient, first.context)).statusCode).toBe(200);
    await t.ctx.db.updateTable('users').set({ country: 'Zambia' }).where('id', '=', doctor.id).execute();
    const second = await liveSession(t, { modality: 'text', credits: { text: 5 }, doctor, startedAgoMs: 1 * MIN });
    const res = await endVia(t, second.patient, second.context);
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ wallet_currency: 'MWK', payout_currency: 'USD' });
    expect(await ledgerOf(t, { session_id: second.session.id })).toEqual([]);
    expect(await walletOf(t, doctor.id)).toMatchObject({ currency: 'MWK', balance_minor: 350_000 });
    await t.ctx.db.updateTable('users').set({ country: 'MW' }).where('id', '=', doctor.id).execute();
    expect((await endVia(t, second.patient, second.context)).statusCode).toBe(200);
  });
});

describe('GET /api/v2/sessions/{context}/billing', () => {
  it('shows units, per-unit entries, status and settlement to participants and admins only', async () => {
    const live = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 12 * MIN });
    await endVia(t, live.patient, live.context);
    const get = async (u: Parameters<TestHarness['auth']>[0]) =>
      t.app.inject({ url: `/api/v2/sessions/${live.context}/billing`, headers: await t.auth(u) });
    const asPatient = (await get(live.patient)).json().data;
    expect(asPatient).toMatchObject({ session_id: live.session.id, status: 'ended', units_billed: 2, units_expected: 2, settled: true });
    expect(asPatient.entries.map((e: { unit_no: number }) => e.unit_no)).toEqual([1, 2]);
    expect(asPatient.entries[0].subscription_id).toEqual(expect.any(Number));
    expect(asPatient.entries[0].doctor_amount_minor).toBeNull();
    const asDoctor = (await get(live.doctor)).json().data;
    expect(asDoctor.entries[0]).toMatchObject({ subscription_id: null, doctor_amount_minor: 300, doctor_currency: 'USD' });
    expect((await get(await t.newAdmin())).statusCode).toBe(200);
    expect((await get(await t.newPatient())).statusCode).toBe(403);
    expect(
      (await t.app.inject({ url: `/api/v2/sessions/call_session:${live.session.id}/billing`, headers: await t.auth(live.patient) }))
        .statusCode,
    ).toBe(404);
  });
});

describe('the periodic tick', () => {
  it('charges each completed unit once, however often (and concurrently) it runs; the end charges the rest', async () => {
    const live = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 25 * MIN });
    await Promise.all([runBillingTick(t.ctx), runBillingTick(t.ctx), runBillingTick(t.ctx)]);
    await runBillingTick(t.ctx);
    let s = await sessionRow(t, live.session.id);
    expect(s.status).toBe('active');
    expect(s.units_billed).toBe(2);
    expect((await ledgerOf(t, { session_id: s.id })).map((r) => r.reason)).toEqual(['periodic', 'periodic']);
    await endVia(t, live.patient, live.context);
    s = await sessionRow(t, s.id);
    expect(s.units_billed).toBe(3);
    expect((await ledgerOf(t, { session_id: s.id })).map((r) => r.reason)).toEqual(['periodic', 'periodic', 'session_end']);
  });

  it('leaves sessions whose clock has not completed a unit, and unbillable ones, alone', async () => {
    const running = await liveSession(t, { modality: 'voice', credits: { voice: 2 }, startedAgoMs: 4 * MIN });
    const waiting = await liveSession(t, { modality: 'text', credits: { text: 2 } });
    await runBillingTick(t.ctx);
    expect((await sessionRow(t, running.session.id)).units_billed).toBe(0);
    expect((await sessionRow(t, waiting.session.id)).status).toBe('waiting_for_doctor');
  });

  it('runs as the billing-tick job of the worker', async () => {
    const { JOBS } = await import('../../src/modules/jobs/index.js');
    expect(JOBS.map((j) => j.name)).toContain('billing-tick');
  });
});

describe('credits running out mid-session', () => {
  it('the tick ends a text session at the billed boundary and tells both participants', async () => {
    const live = await liveSession(t, { modality: 'text', credits: { text: 2 }, startedAgoMs: 25 * MIN, fromAppointment: true });
    const events: unknown[] = [];
    const off = t.ctx.bus.subscribe((e) => {
      if (e.type === 'session.status' && e.sessionId === live.session.id) events.push(e.payload);
    });
    try {
      const r = await runBillingTick(t.ctx);
      expect(r.ended_no_credit).toBeGreaterThanOrEqual(1);
      const s = await sessionRow(t, live.session.id);
      expect(s).toMatchObject({ status: 'ended', end_reason: 'credits_exhausted', units_billed: 2 });
      expect(s.ended_at!.getTime()).toBe(s.activated_at!.getTime() + 20 * MIN);
      expect(s.settled_at).not.toBeNull();
      const outbox = await t.ctx.db
        .selectFrom('notification_outbox')
        .selectAll()
        .where('kind', '=', 'session.ended_no_credit')
        .where('dedupe_key', 'like', `session_ended_no_credit:${s.id}:%`)
        .execute();
      expect(outbox.map((o) => o.recipient_id).sort()).toEqual([live.patient.id, live.doctor.id].sort());
      await expect.poll(() => events.length).toBeGreaterThan(0);
      expect(events[0]).toMatchObject({ status: 'ended', end_reason: 'credits_exhausted' });
      const appt = await t.ctx.db
        .selectFrom('appointments')
        .select('status')
        .where('id', '=', live.appointmentId!)
        .executeTakeFirstOrThrow();
      expect(appt.status).toBe('completed');

      // A hang-up afterwards is "already ended": no "+1", the end time stays at the boundary.
      const again = await endVia(t, live.patient, live.context);
      expect(again.statusCode).toBe(200);
      const after = await sessionRow(t, s.id);
      expect(after.units_billed).toBe(2);
      expect(after.ended_at!.getTime()).toBe(s.ended_at!.getTime());
      await runBillingTick(t.ctx);
      const outboxAgain = await t.ctx.db
        .selectFrom('notification_outbox')
        .select('id')
        .where('dedupe_key', 'like', `session_ended_no_credit:${s.id}:%`)
        .execute();
      expect(outboxAgain).toHaveLength(2);
    } finally {
      off();
    }
  });

  it('a call whose last credit pays the unit just completed ends at that boundary (stacked credits count)', async () => {
    const patient = await t.newPatient();
    await grant(t, patient, { video: 1 }, 5);
    await grant(t, patient, { video: 1 }, 20);
    const live = await liveSession(t, { modality: 'video', patient, startedAgoMs: 20 * MIN + 30_000 });
    await runBillingTick(t.ctx);
    const s = await sessionRow(t, live.session.id);
    expect(s).toMatchObject({
      status: 'ended',
      end_reason: 'credits_exhausted',
      units_billed: 2,
      patient_in_call: false,
      doctor_in_call: false,
    });
    expect(s.ended_at!.getTime()).toBe(s.connected_at!.getTime() + 20 * MIN);
  });

  it('a session whose credits expired before the first unit ends at once with nothing charged', async () => {
    const patient = await t.newPatient();
    const sub = await grant(t, patient, { text: 3 });
    const live = await liveSession(t, { modality: 'text', patient, startedAgoMs: 2 * MIN });
    await sql`update subscriptions set starts_at = now() - interval '2 days', expires_at = now() - interval '1 second' where id = ${sub}`.execute(
      t.ctx.db,
    );
    await runBillingTick(t.ctx);
    const s = await sessionRow(t, live.session.id);
    expect(s).toMatchObject({ status: 'ended', end_reason: 'credits_exhausted', units_billed: 0 });
    expect(s.ended_at!.getTime()).toBe(s.activated_at!.getTime());
  });

  it('an end that finds too few credits bills what is paid and records the session as cut at that boundary', async () => {
    frozen = new Date();
    try {
      const live = await liveSession(t, { modality: 'text', credits: { text: 1 }, startedAgoMs: 15 * MIN, at: frozen });
      const res = await endVia(t, live.patient, live.context);
      expect(res.statusCode).toBe(200);
      const s = await sessionRow(t, live.session.id);
      expect(s).toMatchObject({ status: 'ended', end_reason: 'credits_exhausted', units_billed: 1 });
      expect(s.ended_at!.getTime()).toBe(s.activated_at!.getTime() + 10 * MIN);
      const wallet = await walletOf(t, live.doctor.id);
      expect(wallet?.balance_minor).toBe(300); // never paid for the unit the patient could not pay
    } finally {
      frozen = null;
    }
  });
});

describe('chargeUnits', () => {
  it('treats a unit already in the ledger as charged: spends nothing for it, and advances the high-water mark', async () => {
    const patient = await t.newPatient();
    const sub = await grant(t, patient, { text: 5 });
    const live = await liveSession(t, { modality: 'text', patient, startedAgoMs: 25 * MIN });
    await runBillingTick(t.ctx);
    expect((await sessionRow(t, live.session.id)).units_billed).toBe(2);
    // Forget the high-water mark (as if a crash had lost it): the ledger still knows.
    await t.ctx.db.updateTable('sessions').set({ units_billed: 0 }).where('id', '=', live.session.id).execute();
    const result = await t.ctx.db.transaction().execute(async (trx) => {
      const s = await trx.selectFrom('sessions').selectAll().where('id', '=', live.session.id).forUpdate().executeTakeFirstOrThrow();
      return chargeUnits(trx, t.ctx, s, 3, 'periodic');
    });
    expect(result).toMatchObject({ charged: 1, exhausted: false, session: { units_billed: 3 } });
    expect((await ledgerOf(t, { session_id: live.session.id })).map((r) => r.unit_no)).toEqual([1, 2, 3]);
    expect((await remaining(t, sub)).text_remaining).toBe(2);
    expect(await walletOf(t, live.doctor.id)).toMatchObject({ balance_minor: 900 });
    await endVia(t, patient, live.context);
  });
});

describe('the books', () => {
  it('balance after everything above (billing:audit finds nothing)', async () => {
    const report = await auditBilling(t.ctx.db);
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.checked.ledger_entries).toBeGreaterThan(10);
  });
});
