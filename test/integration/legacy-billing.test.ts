/**
 * The legacy, appointment-addressed billing endpoints behind the SessionContextGuard,
 * and the end-to-end billing flows. Runs on PGlite and PostgreSQL.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { auditBilling } from '../../src/modules/billing/audit.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { MIN, counterValue, endVia, grant, ledgerOf, liveSession, sessionRow, walletOf } from './billing-fixtures.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());
beforeEach(() => {
  t.flags.set({ ENFORCE_SESSION_GATED_BILLING: false });
});

const post = async (user: User, url: string, payload?: Record<string, unknown>, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, headers: { ...(await t.auth(user)), ...headers }, ...(payload === undefined ? {} : { payload }) });

const endSessionUrl = (id: number) => `/api/v2/appointments/${id}/end-session`;
const paymentUrl = (id: number) => `/api/v2/appointments/${id}/process-payment`;
const deductionUrl = '/api/v2/text-appointments/process-deduction';

const guardEvents = (appointmentId: number) =>
  t.ctx.db
    .selectFrom('guard_events')
    .selectAll()
    .where('guard', '=', 'billing')
    .where('appointment_id', '=', appointmentId)
    .orderBy('id')
    .execute();

/** An appointment started under the old flow (in progress, no session), `startedAgoMs` ago. */
async function legacyAppointment(
  startedAgoMs: number,
  opts: { credits?: number; type?: string; duration?: number; patientActive?: boolean; doctorActive?: boolean } = {},
) {
  const appt = await t.newAppointment({
    status: 'in_progress',
    appointment_type: opts.type ?? 'text',
    scheduled_at: new Date(Date.now() - startedAgoMs - 5 * MIN),
  });
  await sql`update appointments set legacy_started_at = now() - make_interval(secs => ${startedAgoMs / 1000}),
                                    duration_minutes = ${opts.duration ?? 30},
                                    legacy_patient_active = ${opts.patientActive ?? true},
                                    legacy_doctor_active = ${opts.doctorActive ?? true} where id = ${appt.id}`.execute(t.ctx.db);
  const sub = await grant(t, appt.patient, {
    [opts.type === 'video' ? 'video' : opts.type === 'text' || !opts.type ? 'text' : 'voice']: opts.credits ?? 10,
  });
  return { ...appt, sub };
}

describe('an appointment with a session, ENFORCE_SESSION_GATED_BILLING=true', () => {
  it.each([
    ['end-session', (id: number) => [endSessionUrl(id), undefined] as const],
    ['process-payment', (id: number) => [paymentUrl(id), undefined] as const],
    ['process-deduction', (id: number) => [deductionUrl, { appointment_id: id, sessions_to_deduct: 1, reason: 'interval' }] as const],
  ])('%s → 400 SESSION_BILLING_REQUIRED with the session ids; nothing changes', async (endpoint, req) => {
    t.flags.set({ ENFORCE_SESSION_GATED_BILLING: true });
    const live = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 25 * MIN, fromAppointment: true });
    const before = await sessionRow(t, live.session.id);
    const metricBefore = await counterValue(t.ctx.metrics.guard.billingBlocked, { endpoint, enforced: 'true' });
    const [url, body] = req(live.appointmentId!);
    const res = await post(live.patient, url, body);
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({
      success: false,
      error_code: 'SESSION_BILLING_REQUIRED',
      session_id: live.session.id,
      session_context: `text_session:${live.session.id}`,
      appointment_id: live.appointmentId,
    });
    expect(await sessionRow(t, live.session.id)).toEqual(before);
    expect(await ledgerOf(t, { session_id: live.session.id })).toEqual([]);
    expect(await ledgerOf(t, { appointment_id: live.appointmentId! })).toEqual([]);
    const appt = await t.ctx.db.selectFrom('appointments').select('status').where('id', '=', live.appointmentId!).executeTakeFirstOrThrow();
    expect(appt.status).toBe('in_progress');

    expect(await counterValue(t.ctx.metrics.guard.billingBlocked, { endpoint, enforced: 'true' })).toBe(metricBefore + 1);
    const line = t.logs.find(
      (l) => String(l['msg']).includes('SessionContextGuard: Billing blocked') && l['appointment_id'] === live.appointmentId,
    );
    expect(line).toMatchObject({ session_id: live.session.id, endpoint });
    expect(await guardEvents(live.appointmentId!)).toMatchObject([
      { operation: endpoint, outcome: 'blocked', enforced: true, session_id: live.session.id },
    ]);
  });

  it('refuses strangers (403) before the guard says anything, and unknown appointments (404)', async () => {
    t.flags.set({ ENFORCE_SESSION_GATED_BILLING: true });
    const live = await liveSession(t, { modality: 'voice', credits: { voice: 2 }, fromAppointment: true });
    for (const stranger of [await t.newPatient(), await t.newDoctor(), await t.newAdmin()]) {
      const res = await post(stranger, endSessionUrl(live.appointmentId!));
      expect(res.statusCode).toBe(403);
      expect(res.json().session_id).toBeUndefined();
    }
    expect((await post(live.patient, endSessionUrl(99_999_999))).statusCode).toBe(404);
    expect(
      (await post(live.patient, deductionUrl, { appointment_id: 99_999_999, sessions_to_deduct: 1, reason: 'interval' })).statusCode,
    ).toBe(404);
  });
});

describe('an appointment with a session, enforcement off: delegated to the session', () => {
  it('end-session ends the session and settles it through the session ledger, once', async () => {
    const live = await liveSession(t, { modality: 'video', credits: { video: 5 }, startedAgoMs: 15 * MIN, fromAppointment: true });
    const metricBefore = await counterValue(t.ctx.metrics.guard.billingBlocked, { endpoint: 'end-session', enforced: 'false' });
    const res = await post(live.doctor, endSessionUrl(live.appointmentId!));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      success: true,
      data: {
        billed_through: 'session',
        session_id: live.session.id,
        units_charged: 2,
        units_total: 2,
        already_processed: false,
        appointment_status: 'completed',
      },
    });
    const s = await sessionRow(t, live.session.id);
    expect(s).toMatchObject({ status: 'ended', units_billed: 2 });
    expect(s.settled_at).not.toBeNull();
    expect(await ledgerOf(t, { appointment_id: live.appointmentId! })).toEqual([]); // never a second, appointment-based charge

    const again = await post(live.patient, endSessionUrl(live.appointmentId!));
    expect(again.json().data).toMatchObject({ already_processed: true, units_charged: 0, units_total: 2 });
    const paid = await post(live.patient, paymentUrl(live.appointmentId!));
    expect(paid.json().data).toMatchObject({ billed_through: 'session', units_charged: 0, units_total: 2 });
    expect((await sessionRow(t, s.id)).units_billed).toBe(2);
    expect(await walletOf(t, live.doctor.id)).toMatchObject({ balance_minor: 600 });

    expect(await counterValue(t.ctx.metrics.guard.billingBlocked, { endpoint: 'end-session', enforced: 'false' })).toBe(metricBefore + 2);
    const warn = t.logs.find(
      (l) => String(l['msg']).includes('SessionContextGuard: Billing allowed') && l['appointment_id'] === live.appointmentId,
    );
    expect(warn).toMatchObject({ level: 40, would_block: true, session_id: live.session.id });
    expect((await guardEvents(live.appointmentId!)).map((e) => [e.operation, e.outcome, e.enforced])).toEqual([
      ['end-session', 'would_block', false],
      ['end-session', 'would_block', false],
      ['process-payment', 'would_block', false],
    ]);
  });

  it('process-payment and process-deduction bring the running session up to date and never end it or charge what the client asks', async () => {
    const live = await liveSession(t, { modality: 'text', credits: { text: 9 }, startedAgoMs: 25 * MIN, fromAppointment: true });
    const pay = await post(live.patient, paymentUrl(live.appointmentId!));
    expect(pay.json().data).toMatchObject({ billed_through: 'session', units_charged: 2, units_total: 2 });
    const deduct = await post(live.patient, deductionUrl, {
      appointment_id: live.appointmentId,
      sessions_to_deduct: 5,
      reason: 'interval',
    });
    expect(deduct.statusCode, deduct.body).toBe(200);
    expect(deduct.json().data).toMatchObject({
      billed_through: 'session',
      sessions_deducted: 0,
      sessions_requested: 5,
      units_total: 2,
      remaining_sessions: 7,
    });
    const s = await sessionRow(t, live.session.id);
    expect(s).toMatchObject({ status: 'active', units_billed: 2 });
    expect((await ledgerOf(t, { session_id: s.id })).map((r) => r.reason)).toEqual(['periodic', 'periodic']);
  });
});

describe('end-to-end billing flows', () => {
  it('session created → ended → billed through the session; the appointment endpoint is then blocked (flag on) or a no-op (flag off)', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor({ country: 'Malawi' });
    await grant(t, patient, { text: 3 });
    const appt = await t.newAppointment({ patient, doctor, appointment_type: 'text' });
    const started = await post(patient, `/api/v2/appointments/${appt.id}/start-session`);
    expect(started.statusCode).toBe(201);
    const { id, session_context } = started.json().data as { id: number; session_context: string };
    const look = await t.app.inject({ url: `/api/v2/appointments/${appt.id}/session`, headers: await t.auth(patient) });
    expect(look.json().data.session_context).toBe(session_context);
    await sql`update sessions set status = 'active', activated_at = now() - interval '12 minutes' where id = ${id}`.execute(t.ctx.db);

    const ended = await endVia(t, patient, session_context);
    expect(ended.statusCode).toBe(200);
    const billing = (await t.app.inject({ url: `/api/v2/sessions/${session_context}/billing`, headers: await t.auth(doctor) })).json().data;
    expect(billing).toMatchObject({ status: 'ended', units_billed: 2, units_expected: 2, settled: true });
    expect(billing.entries.map((e: { doctor_amount_minor: number }) => e.doctor_amount_minor)).toEqual([350_000, 350_000]);

    t.flags.set({ ENFORCE_SESSION_GATED_BILLING: true });
    const blocked = await post(patient, endSessionUrl(appt.id));
    expect(blocked.json()).toMatchObject({ error_code: 'SESSION_BILLING_REQUIRED', session_id: id, session_context });
    t.flags.set({ ENFORCE_SESSION_GATED_BILLING: false });
    const delegated = await post(patient, endSessionUrl(appt.id));
    expect(delegated.json().data).toMatchObject({ billed_through: 'session', already_processed: true, units_charged: 0, units_total: 2 });
    expect(await walletOf(t, doctor.id)).toMatchObject({ currency: 'MWK', balance_minor: 700_000 });
  });
});

describe('a true legacy appointment (no session): billed through the same ledger, once', () => {
  it('a consultation, not a clock: the doctor ending an appointment where only one side took part charges 0, pays nothing, marks it missed', async () => {
    const appt = await legacyAppointment(20 * MIN, { patientActive: false, doctorActive: true });
    const pay = await post(appt.doctor, `/api/v2/appointments/${appt.id}/process-payment`);
    expect(pay.statusCode, pay.body).toBe(200);
    expect(pay.json().data).toMatchObject({ units_charged: 0 });
    const end = await post(appt.doctor, `/api/v2/appointments/${appt.id}/end-session`);
    expect(end.statusCode, end.body).toBe(200);
    expect(end.json().data).toMatchObject({ units_charged: 0, appointment_status: 'missed' });
    expect(end.json().data.payment_processing).toMatchObject({ doctor_payment_amount_minor: 0 });
    expect(await t.ctx.db.selectFrom('ledger_entries').select('id').where('appointment_id', '=', appt.id).execute()).toEqual([]);
    expect((await t.ctx.db.selectFrom('appointments').select('status').where('id', '=', appt.id).executeTakeFirstOrThrow()).status).toBe(
      'missed',
    );
  });

  it('a message from each side counts as taking part', async () => {
    const appt = await legacyAppointment(15 * MIN, { patientActive: false, doctorActive: false });
    for (const u of [appt.patient, appt.doctor]) {
      await sql`insert into messages (appointment_id, sender_id, type, body) values (${appt.id}, ${u.id}, 'text', 'hi')`.execute(t.ctx.db);
    }
    const end = await post(appt.doctor, `/api/v2/appointments/${appt.id}/end-session`);
    expect(end.json().data).toMatchObject({ units_charged: 2, appointment_status: 'completed' });
  });

  it('end-session charges the elapsed-time units once and completes the appointment; process-payment adds nothing', async () => {
    const appt = await legacyAppointment(25 * MIN);
    const res = await post(appt.patient, endSessionUrl(appt.id));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      success: true,
      message: 'Session ended successfully',
      data: {
        billed_through: 'appointment',
        session_id: null,
        appointment_status: 'completed',
        units_charged: 3,
        payment_processing: { patient_sessions_deducted: 3, doctor_payment_amount: 9, doctor_payment_currency: 'USD', errors: [] },
      },
    });
    const rows = await ledgerOf(t, { appointment_id: appt.id });
    expect(rows.map((r) => [r.unit_no, r.session_id, r.reason])).toEqual([
      [1, null, 'legacy_end_session'],
      [2, null, 'legacy_end_session'],
      [3, null, 'legacy_end_session'],
    ]);
    const again = await post(appt.doctor, endSessionUrl(appt.id));
    expect(again.json().data).toMatchObject({ already_processed: true, units_charged: 0, units_total: 3 });
    const pay = await post(appt.doctor, paymentUrl(appt.id));
    expect(pay.json().data).toMatchObject({ units_charged: 0, units_total: 3 });
    const payAgain = await post(appt.doctor, paymentUrl(appt.id));
    expect(payAgain.json().data).toMatchObject({ already_processed: true, units_charged: 0 });
    expect(await ledgerOf(t, { appointment_id: appt.id })).toHaveLength(3);
    expect(await walletOf(t, appt.doctor.id)).toMatchObject({ balance_minor: 900 });
    expect((await guardEvents(appt.id)).every((e) => e.outcome === 'allowed_legacy')).toBe(true);
    // The guard flag does not apply without a session.
    t.flags.set({ ENFORCE_SESSION_GATED_BILLING: true });
    expect((await post(appt.patient, endSessionUrl(appt.id))).statusCode).toBe(200);
  });

  it('process-payment before the end charges what is due so far; the end charges only the rest', async () => {
    const appt = await legacyAppointment(5 * MIN, { type: 'audio' });
    expect((await post(appt.patient, paymentUrl(appt.id))).json().data).toMatchObject({ units_charged: 1, units_total: 1 });
    await sql`update appointments set legacy_started_at = legacy_started_at - interval '10 minutes' where id = ${appt.id}`.execute(
      t.ctx.db,
    );
    expect((await post(appt.patient, endSessionUrl(appt.id))).json().data).toMatchObject({ units_charged: 1, units_total: 2 });
    const rows = await ledgerOf(t, { appointment_id: appt.id });
    expect(rows.map((r) => r.modality)).toEqual(['voice', 'voice']);
  });

  it('never bills more than the booked duration, and at least one unit', async () => {
    const old = await legacyAppointment(3 * 24 * 60 * MIN, { duration: 30 });
    expect((await post(old.patient, endSessionUrl(old.id))).json().data.units_charged).toBe(3);
    const fresh = await legacyAppointment(0);
    expect((await post(fresh.patient, endSessionUrl(fresh.id))).json().data.units_charged).toBe(1);
  });

  it('refuses appointments that never started under the old flow, and strangers', async () => {
    const confirmed = await t.newAppointment({ status: 'confirmed' });
    const res = await post(confirmed.patient, endSessionUrl(confirmed.id));
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ appointment_status: 'confirmed' });
    const appt = await legacyAppointment(5 * MIN);
    expect((await post(await t.newPatient(), paymentUrl(appt.id))).statusCode).toBe(403);
    expect((await post(await t.newAdmin(), endSessionUrl(appt.id))).statusCode).toBe(403);
    expect(await ledgerOf(t, { appointment_id: appt.id })).toEqual([]);
  });

  it('process-deduction is capped by the elapsed-time rule and idempotent by Idempotency-Key', async () => {
    const appt = await legacyAppointment(15 * MIN); // 2 units due so far
    const body = (n: number) => ({ appointment_id: appt.id, sessions_to_deduct: n, reason: 'interval' });
    const first = await post(appt.patient, deductionUrl, body(1), { 'idempotency-key': 'k-1' });
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toMatchObject({
      message: 'Session deduction processed successfully',
      data: { sessions_deducted: 1, sessions_requested: 1, remaining_sessions: 9, reason: 'interval', units_total: 1 },
    });
    const replay = await post(appt.patient, deductionUrl, body(1), { 'idempotency-key': 'k-1' });
    expect(replay.statusCode).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());
    const reused = await post(appt.patient, deductionUrl, body(2), { 'idempotency-key': 'k-1' });
    expect(reused.statusCode).toBe(409);
    expect(reused.json().error_code).toBe('CONFLICT');

    const more = await post(appt.patient, deductionUrl, body(5), { 'idempotency-key': 'k-2' });
    expect(more.json().data).toMatchObject({ sessions_deducted: 1, sessions_requested: 5, units_total: 2 });
    const capped = await post(appt.patient, deductionUrl, body(1));
    expect(capped.json().data).toMatchObject({ sessions_deducted: 0, units_total: 2 });
    expect(await ledgerOf(t, { appointment_id: appt.id })).toHaveLength(2);
    // The end freezes the cost: nothing more is due.
    expect((await post(appt.patient, endSessionUrl(appt.id))).json().data).toMatchObject({ units_charged: 0, units_total: 2 });
  });

  it('without credits a payment or deduction is refused (402) and leaves no trace; the end still ends', async () => {
    const appt = await legacyAppointment(15 * MIN, { credits: 0 });
    const deduct = await post(
      appt.patient,
      deductionUrl,
      { appointment_id: appt.id, sessions_to_deduct: 1, reason: 'manual_end' },
      { 'idempotency-key': 'nc-1' },
    );
    expect(deduct.statusCode).toBe(402);
    expect(deduct.json().error_code).toBe('INSUFFICIENT_CREDITS');
    expect((await post(appt.patient, paymentUrl(appt.id))).statusCode).toBe(402);
    expect(await t.ctx.db.selectFrom('legacy_billing_ops').selectAll().where('appointment_id', '=', appt.id).execute()).toEqual([]);
    const end = await post(appt.patient, endSessionUrl(appt.id));
    expect(end.statusCode).toBe(200);
    expect(end.json().data).toMatchObject({
      units_charged: 0,
      appointment_status: 'completed',
      payment_processing: { patient_deduction_success: false },
    });
    expect(end.json().data.payment_processing.errors[0]).toMatch(/Insufficient text credits/);
  });

  it('validates the deduction body strictly', async () => {
    const appt = await legacyAppointment(15 * MIN);
    for (const bad of [
      { appointment_id: appt.id, sessions_to_deduct: 0, reason: 'interval' },
      { appointment_id: appt.id, sessions_to_deduct: '1', reason: 'interval' },
      { appointment_id: appt.id, sessions_to_deduct: 1, reason: 'whatever' },
      { appointment_id: appt.id, sessions_to_deduct: 1, reason: 'interval', extra: true },
    ]) {
      expect((await post(appt.patient, deductionUrl, bad)).statusCode).toBe(400);
    }
    expect((await post(appt.patient, endSessionUrl(appt.id), { sessions: 3 })).statusCode).toBe(400);
    expect((await post(appt.patient, endSessionUrl(appt.id), {})).statusCode).toBe(200);
  });
});

describe('the books', () => {
  it('balance after every flow above', async () => {
    const report = await auditBilling(t.ctx.db);
    expect(report.findings).toEqual([]);
  });
});
