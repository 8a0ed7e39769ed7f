/**
 * The original client contract: the patient's subscription, the
 * doctor's wallet, the dashboard summary, and the routes sessiongate does not serve
 * (and those the old backend never routed either). Requests as the app sends them; every field it reads, with its type.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { MIN, endVia, grant, grantExpired, liveSession } from '../integration/billing-fixtures.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

const APP_HEADERS = { accept: 'application/json', 'x-app-version': '1.1.3', 'x-platform': 'ios' };
const as = async (u: User) => ({ ...APP_HEADERS, ...(await t.auth(u)) });
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const MONEY = /^-?\d+\.\d{2}$/;

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }, status: number) {
  expect(res.statusCode).toBe(status);
  expect(String(res.headers['content-type'])).toMatch(/json/);
  const body = res.json() as { success: unknown; message: unknown };
  expect(body.success).toBe(false);
  expect(typeof body.message).toBe('string');
  expect((body.message as string).length).toBeGreaterThan(10);
  return body as { success: false; message: string };
}

/** A doctor in Malawi who was paid for a 25-minute text consultation (3 units × 3500.00 MWK). */
async function paidDoctor(patientName = 'Grace Banda') {
  const patient = await t.newPatient({ name: patientName });
  const doctor = await t.newDoctor({ country: 'MW' });
  const live = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 25 * MIN, patient, doctor });
  const end = await endVia(t, patient, live.context);
  expect(end.statusCode, end.body).toBe(200);
  return { patient, doctor, sessionId: live.session.id };
}

describe('GET /subscription', () => {
  it('data: null without an active plan (none, expired only, or a doctor)', async () => {
    const none = await t.newPatient();
    const res = await t.app.inject({ url: '/api/subscription', headers: await as(none) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ success: true, data: null });

    const lapsed = await t.newPatient();
    await grantExpired(t, lapsed, { text: 3 });
    expect((await t.app.inject({ url: '/api/subscription', headers: await as(lapsed) })).json()).toEqual({ success: true, data: null });

    const doctor = await t.newDoctor();
    expect((await t.app.inject({ url: '/api/subscription', headers: await as(doctor) })).json()).toEqual({ success: true, data: null });
  });

  it('camelCase and snake_case keys, credits summed over active plans and spent by billing', async () => {
    const patient = await t.newPatient();
    await grant(t, patient, { text: 3, voice: 2, video: 1 });
    await grant(t, patient, { text: 2 });
    await grantExpired(t, patient, { voice: 9 });
    const read = async () => {
      const res = await t.app.inject({ url: '/api/subscription', headers: await as(patient) });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().success).toBe(true);
      return res.json().data;
    };
    const d = await read();
    // Read without fallback by the chat and booking screens.
    expect(d.textSessionsRemaining).toBe(5);
    expect(d.voiceCallsRemaining).toBe(2);
    expect(d.videoCallsRemaining).toBe(1);
    expect(d.isActive).toBe(true);
    // The snake_case spellings the dashboard reads.
    expect(d).toMatchObject({ text_sessions_remaining: 5, voice_calls_remaining: 2, video_calls_remaining: 1, is_active: true, status: 1 });
    expect(d).toMatchObject({ totalTextSessions: 5, totalVoiceCalls: 2, totalVideoCalls: 1, total_text_sessions: 5 });
    for (const k of ['id', 'plan_id', 'plan_price']) expect(typeof d[k]).toBe('number');
    for (const k of ['planName', 'plan_name', 'plan_currency']) expect(typeof d[k]).toBe('string');
    for (const k of ['activatedAt', 'activated_at', 'expiresAt', 'expires_at', 'end_date']) expect(d[k]).toMatch(ISO);
    expect(typeof d.plan).toBe('object');

    // A 25-minute text consultation costs 3 units: the badge follows the ledger.
    const doctor = await t.newDoctor();
    const live = await liveSession(t, { modality: 'text', startedAgoMs: 25 * MIN, patient, doctor });
    expect((await endVia(t, patient, live.context)).statusCode).toBe(200);
    expect((await read()).textSessionsRemaining).toBe(2);
  });

  it('401 without a token, as JSON', async () => {
    expectProblem(await t.app.inject({ url: '/api/subscription', headers: APP_HEADERS }), 401);
  });
});

describe('doctor wallet', () => {
  it('GET /doctor/wallet: balance and rates as decimal strings', async () => {
    const { doctor } = await paidDoctor();
    const res = await t.app.inject({ url: '/api/doctor/wallet', headers: await as(doctor) });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.success).toBe(true);
    expect(body.data.balance).toBe('10500.00');
    expect(Number(body.data.balance)).toBe(10500); // the app coerces
    expect(body.data.total_earned).toBe('10500.00');
    expect(body.data.total_withdrawn).toBe('0.00');
    expect(body.data.payment_rates).toEqual({ text: '3500.00', audio: '3500.00', video: '3500.00', currency: 'MWK' });
    expect(Array.isArray(body.data.payment_methods)).toBe(true);
  });

  it('a new doctor has a zero balance in their payout currency; patients are refused with a message', async () => {
    const doctor = await t.newDoctor({ country: 'Kenya' });
    const res = await t.app.inject({ url: '/api/doctor/wallet', headers: await as(doctor) });
    expect(res.json().data).toMatchObject({ balance: '0.00', total_earned: '0.00', payment_rates: { currency: 'USD', text: '3.00' } });
    expect(expectProblem(await t.app.inject({ url: '/api/doctor/wallet', headers: await as(await t.newPatient()) }), 403).message).toMatch(
      /doctor/i,
    );
  });

  it('GET /doctor/wallet/transactions?page=1&per_page=10: a paginator of credits with the patient’s name', async () => {
    const { doctor, sessionId } = await paidDoctor('Thoko Mwale');
    const res = await t.app.inject({ url: '/api/doctor/wallet/transactions?page=1&per_page=10', headers: await as(doctor) });
    expect(res.statusCode, res.body).toBe(200);
    const page = res.json().data;
    expect(page).toMatchObject({ current_page: 1, last_page: 1, per_page: 10, total: 3 });
    expect(page.data).toHaveLength(3);
    for (const tx of page.data) {
      expect(typeof tx.id).toBe('number');
      expect(tx.type).toBe('credit');
      expect(tx.amount).toMatch(MONEY);
      expect(tx.amount).toBe('3500.00');
      expect(tx.created_at).toMatch(ISO);
      expect(typeof tx.status).toBe('string');
      expect('payment_method' in tx).toBe(true);
      expect(tx.patient_name).toBe('Thoko Mwale');
      expect(tx.metadata.patient_name).toBe('Thoko Mwale');
      expect(tx.session_id).toBe(sessionId);
    }
    const second = await t.app.inject({ url: '/api/doctor/wallet/transactions?page=2&per_page=2', headers: await as(doctor) });
    expect(second.json().data).toMatchObject({ current_page: 2, last_page: 2, total: 3 });
    expect(second.json().data.data).toHaveLength(1);
    expectProblem(await t.app.inject({ url: '/api/doctor/wallet/transactions?page=0', headers: await as(doctor) }), 400);
  });

  it('earnings-summary, payment-rates and withdrawal-requests (no screen reads them) answer in Laravel’s shapes', async () => {
    const { doctor } = await paidDoctor();
    const headers = await as(doctor);
    const summary = (await t.app.inject({ url: '/api/doctor/wallet/earnings-summary', headers })).json();
    expect(summary.success).toBe(true);
    expect(summary.data.wallet).toEqual({ balance: '10500.00', total_earned: '10500.00', total_withdrawn: '0.00' });
    expect(summary.data.earnings_by_type).toEqual({ text: '10500.00', audio: '0.00', video: '0.00' });
    expect(summary.data.recent_transactions).toHaveLength(3);
    const rates = (await t.app.inject({ url: '/api/doctor/wallet/payment-rates', headers })).json();
    expect(rates).toEqual({ success: true, data: { text: '3500.00', audio: '3500.00', video: '3500.00', currency: 'MWK' } });
    const requests = (await t.app.inject({ url: '/api/doctor/wallet/withdrawal-requests', headers })).json();
    expect(requests.data).toMatchObject({ data: [], total: 0, current_page: 1 });
  });

  it('POST /doctor/wallet/withdraw: both request shapes get a 4xx whose message the doctor can act on, and the balance is untouched', async () => {
    const { doctor } = await paidDoctor();
    const headers = await as(doctor);
    const screen = await t.app.inject({
      method: 'POST',
      url: '/api/doctor/wallet/withdraw',
      headers,
      payload: {
        amount: 5000,
        payment_method: 'mobile_money',
        payment_details: { mobile_provider: 'airtel', mobile_number: '0991234567' },
      },
    });
    expect(expectProblem(screen, 404).message).toMatch(/contact support/i);
    expectProblem(
      await t.app.inject({
        method: 'POST',
        url: '/api/doctor/wallet/withdraw',
        headers,
        payload: { amount: 5000, method: 'bank_transfer' },
      }),
      404,
    );
    expect((await t.app.inject({ url: '/api/doctor/wallet', headers })).json().data.balance).toBe('10500.00');
  });
});

describe('GET /dashboard/summary', () => {
  it('doctor: wallet balance, upcoming appointments, live sessions, rating stats, unread notifications', async () => {
    const { doctor } = await paidDoctor();
    const upcoming = await t.newAppointment({ doctor, status: 'pending', scheduled_at: new Date(Date.now() + 86400_000) });
    await t.newAppointment({ doctor, status: 'cancelled', scheduled_at: new Date(Date.now() + 2 * 86400_000) });
    const live = await liveSession(t, { modality: 'text', credits: { text: 1 }, doctor });
    const res = await t.app.inject({ url: '/api/dashboard/summary', headers: await as(doctor) });
    expect(res.statusCode, res.body).toBe(200);
    const d = res.json().data;
    expect(d.doctor_data.wallet.balance).toBe('10500.00');
    expect(d.doctor_data.appointments.map((a: { id: number }) => a.id)).toEqual([upcoming.id]);
    expect(d.doctor_data.appointments[0].status).toBe(0);
    expect(d.doctor_data.active_sessions.map((s: { id: number }) => s.id)).toEqual([live.session.id]);
    expect(typeof d.doctor_data.stats.rating).toBe('number');
    expect(typeof d.doctor_data.stats.total_ratings).toBe('number');
    expect(d.doctor_data.stats.pending_appointments_count).toBe(1);
    expect(typeof d.notifications_stats.unread_count).toBe('number');
    expect(d.patient_data).toBeUndefined();
  });

  it('patient: subscription with snake_case keys (or null), appointments, live sessions, unread notifications', async () => {
    const patient = await t.newPatient();
    const empty = (await t.app.inject({ url: '/api/dashboard/summary', headers: await as(patient) })).json().data;
    expect(empty.patient_data).toEqual({ subscription: null, appointments: [], active_sessions: [] });
    expect(empty.notifications_stats).toEqual({ unread_count: 0 });

    await grant(t, patient, { text: 2, video: 1 });
    const a = await t.newAppointment({ patient, appointment_type: 'text' });
    // Starting the session notifies both sides (in-app notifications).
    expect(
      (await t.app.inject({ method: 'POST', url: `/api/appointments/${a.id}/start-session`, headers: await as(patient), payload: {} }))
        .statusCode,
    ).toBe(201);
    const d = (await t.app.inject({ url: '/api/dashboard/summary', headers: await as(patient) })).json().data;
    expect(d.patient_data.subscription).toMatchObject({
      text_sessions_remaining: 2,
      video_calls_remaining: 1,
      voice_calls_remaining: 0,
      is_active: true,
    });
    expect(d.patient_data.active_sessions).toHaveLength(1);
    expect(d.patient_data.active_sessions[0]).toMatchObject({ appointment_id: a.id, status: 'waiting_for_doctor' });
    expect(typeof d.notifications_stats.unread_count).toBe('number');
  });
});

describe('out of scope and never-routed calls', () => {
  const platform: [string, string][] = [
    ['POST', '/api/login'],
    ['POST', '/api/register'],
    ['POST', '/api/auth/verify-email'],
    ['POST', '/api/google-login'],
    ['GET', '/api/oauth/google/callback'],
    ['POST', '/api/refresh'],
    ['POST', '/api/logout'],
    ['GET', '/api/user'],
    ['PATCH', '/api/profile'],
    ['POST', '/api/change-password'],
    ['POST', '/api/upload/profile-picture'],
    ['POST', '/api/upload/profile-picture-public'],
    ['POST', '/api/upload/id-document'],
    ['GET', '/api/user/privacy-settings'],
    ['POST', '/api/payments/paychangu/initiate'],
    ['GET', '/api/payments/status'],
    ['POST', '/api/payments/refund'],
    ['GET', '/api/plans'],
    ['POST', '/api/chatbot/response'],
    ['POST', '/api/chatbot/streaming'],
    ['POST', '/api/notifications/push-token'],
    ['GET', '/api/notifications'],
    ['GET', '/api/admin/users'],
    ['GET', '/api/doctors/active'],
    ['GET', '/api/doctors/7'],
    ['GET', '/api/doctors/7/reviews'],
    ['POST', '/api/reviews'],
    ['POST', '/api/doctor-ratings/7/9'],
    ['GET', '/api/appointments/statistics/monthly'],
    ['GET', '/api/encryption/keys'],
    ['GET', '/api/app/version-check'],
    ['GET', '/api/health'],
  ];
  const never: [string, string][] = [
    ['GET', '/api/text-sessions/active'],
    ['GET', '/api/text-sessions/12/status'],
    ['POST', '/api/text-appointments/57/end-session'],
    ['POST', '/api/call-sessions/extend'],
    ['POST', '/api/api/call-sessions/answer'],
    ['POST', '/api/appointments/57/cancel'],
    ['GET', '/api/text-sessions/patient/history'],
    ['GET', '/api/chat/NaN/info'],
  ];

  it.each(platform)('%s %s → 404 problem: served by the platform’s main backend (no token needed)', async (method, url) => {
    const res = await t.app.inject({ method: method as 'GET', url, headers: APP_HEADERS, payload: method === 'GET' ? undefined : {} });
    const body = expectProblem(res, 404) as unknown as Record<string, unknown>;
    expect(body.message).toMatch(/main service/);
    expect(body.served_by).toBe('platform');
  });

  it.each(never)('%s %s → 404 problem: never existed', async (method, url) => {
    const res = await t.app.inject({
      method: method as 'GET',
      url,
      headers: { ...APP_HEADERS, 'content-type': 'application/json' },
      payload: method === 'GET' ? undefined : '',
    });
    const body = expectProblem(res, 404) as unknown as Record<string, unknown>;
    expect(body.served_by).toBe('none');
  });

  it('the consultation routes beside them are untouched', async () => {
    const doctor = await t.newDoctor();
    const headers = await as(await t.newPatient());
    expect((await t.app.inject({ url: `/api/doctors/${doctor.id}/availability`, headers })).statusCode).toBe(200);
    expect((await t.app.inject({ url: '/api/v2/plans', headers })).statusCode).toBe(200);
    expect((await t.app.inject({ url: '/api/appointments', headers })).statusCode).toBe(200);
  });
});
