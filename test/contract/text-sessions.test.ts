/**
 * Contract tests of the original app's text sessions and text-appointment calls: its own requests
 * (ids as strings, `text_session_N`, body-less JSON POSTs, unknown fields) against the real app on
 * a real database, asserting every field the app reads with its type.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { MIN, grant, ledgerOf, liveSession, sessionRow } from '../integration/billing-fixtures.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());
beforeEach(() => {
  t.flags.set({ ENFORCE_SESSION_GATED_CHAT: false, ENFORCE_SESSION_GATED_BILLING: false, ALLOW_LEGACY_APPOINTMENT_CHAT: true });
});

/** Style R/F of the app: bearer token, JSON content type, whatever body (possibly none). */
async function call(user: User, method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown) {
  const headers: Record<string, string> = { ...(await t.auth(user)), 'x-app-version': '1.1.3', 'x-platform': 'android' };
  if (method !== 'GET') headers['content-type'] = 'application/json';
  return t.app.inject({
    method,
    url,
    headers,
    payload: payload === undefined ? (method === 'GET' ? undefined : '') : JSON.stringify(payload),
  });
}

function expectFailure(res: { statusCode: number; json(): unknown }, status: number) {
  expect(res.statusCode).toBe(status);
  const body = res.json() as { success: unknown; message: unknown };
  expect(body.success).toBe(false);
  expect(typeof body.message).toBe('string');
  expect((body.message as string).length).toBeGreaterThan(5);
  return body as { success: false; message: string; error_code: string } & Record<string, unknown>;
}

function expectPerson(p: Record<string, unknown>, id: number) {
  expect(p['id']).toBe(id);
  for (const k of ['first_name', 'last_name', 'display_name']) expect(typeof p[k]).toBe('string');
  expect(p).toHaveProperty('profile_picture_url');
}

function expectTextSession(d: Record<string, unknown>, s: { id: number; patient: User; doctor: User }) {
  expect(d['id']).toBe(s.id);
  expect(typeof d['status']).toBe('string');
  expect(typeof d['started_at']).toBe('string');
  expect(Number.isNaN(Date.parse(d['started_at'] as string))).toBe(false);
  for (const k of ['activated_at', 'ended_at']) expect(d[k] === null || typeof d[k] === 'string').toBe(true);
  for (const k of ['remaining_time_minutes', 'remaining_sessions', 'elapsed_minutes', 'sessions_used'])
    expect(Number.isInteger(d[k])).toBe(true);
  expect(d['patient_id']).toBe(s.patient.id);
  expect(d['doctor_id']).toBe(s.doctor.id);
  expectPerson(d['patient'] as Record<string, unknown>, s.patient.id);
  expectPerson(d['doctor'] as Record<string, unknown>, s.doctor.id);
  expect(typeof d['other_participant_name']).toBe('string');
  expect(typeof d['has_doctor_response']).toBe('boolean');
}

async function patientWithCredits(text = 3) {
  const p = await t.newPatient({ name: 'Amina Banda' });
  await grant(t, p, { text });
  return p;
}

describe('POST /api/text-sessions/start', () => {
  it('starts an instant session: data.session_id, data.id, doctor{id,name}, chat_room_id', async () => {
    const patient = await patientWithCredits();
    const doctor = await t.newDoctor({ name: 'Chisomo Phiri' });
    const res = await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id, reason: 'Headache', unknown_field: 1 });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body.success).toBe(true);
    expect(Number.isInteger(body.data.session_id)).toBe(true);
    expect(body.data.id).toBe(body.data.session_id);
    expect(body.data.appointment_id).toBe(body.data.session_id);
    expect(body.data.doctor.id).toBe(doctor.id);
    expect(body.data.doctor.name).toBe('Dr. Chisomo Phiri');
    expect(body.data.chat_room_id).toBe(`text_session_${body.data.session_id}`);
    expect(body.data.sessions_remaining).toBe(3);
    expect(body.data.remaining_time_minutes).toBe(30);
    expect(body.data.status).toBe('waiting_for_doctor');
    const row = await sessionRow(t, body.data.session_id);
    expect(row.source).toBe('INSTANT');
  });

  it('accepts the doctor id as a numeric string', async () => {
    const patient = await patientWithCredits();
    const doctor = await t.newDoctor();
    const res = await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: String(doctor.id) });
    expect(res.statusCode).toBe(201);
  });

  it('a busy doctor is a non-2xx with the wording that opens the busy dialog; nothing is created', async () => {
    const doctor = await t.newDoctor();
    const first = await patientWithCredits();
    expect((await call(first, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id })).statusCode).toBe(201);
    const second = await patientWithCredits();
    const body = expectFailure(await call(second, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id }), 409);
    expect(body.message).toBe('Doctor is currently in another session');
    const rows = await t.ctx.db.selectFrom('sessions').select('id').where('patient_id', '=', second.id).execute();
    expect(rows).toHaveLength(0);
  });

  it('no text credit, an unknown doctor and a second live session are clear refusals, never 500', async () => {
    const broke = await t.newPatient();
    const doctor = await t.newDoctor();
    const noCredit = expectFailure(await call(broke, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id }), 402);
    expect(noCredit.message).toMatch(/credit/i);
    const patient = await patientWithCredits();
    expectFailure(await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: 99_999_999 }), 404);
    expect((await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id })).statusCode).toBe(201);
    const other = await t.newDoctor();
    const again = expectFailure(await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: other.id }), 409);
    expect(again.message).toMatch(/live session/);
    expectFailure(await call(patient, 'POST', '/api/text-sessions/start', {}), 400);
  });
});

describe('GET /api/text-sessions/{id} and check-response', () => {
  it('answers the same session for 12, text_session_12 and text_session:12, with every field the header reads', async () => {
    const patient = await patientWithCredits();
    const doctor = await t.newDoctor({ name: 'Grace Mwale' });
    const id = (await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id })).json().data.session_id as number;
    for (const form of [String(id), `text_session_${id}`, `text_session:${id}`]) {
      const res = await call(patient, 'GET', `/api/text-sessions/${form}`);
      expect(res.statusCode, form).toBe(200);
      expect(res.json().success).toBe(true);
      expectTextSession(res.json().data, { id, patient, doctor });
    }
    const asDoctor = (await call(doctor, 'GET', `/api/text-sessions/${id}`)).json().data;
    expect(asDoctor.other_participant_name).toBe('Amina Banda');
    const asPatient = (await call(patient, 'GET', `/api/text-sessions/${id}`)).json().data;
    expect(asPatient.other_participant_name).toBe('Dr. Grace Mwale');

    expectFailure(await call(await t.newPatient(), 'GET', `/api/text-sessions/${id}`), 403);
    for (const bad of ['abc', 'NaN', 'active', 'call_session:1', '99999999']) {
      expectFailure(await call(patient, 'GET', `/api/text-sessions/${bad}`), 404);
    }
  });

  it('check-response: top-level status/timeRemaining/deadline through waiting → active', async () => {
    const patient = await patientWithCredits();
    const doctor = await t.newDoctor();
    const id = (await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id })).json().data.session_id as number;
    const url = `/api/text-sessions/${id}/check-response`;

    let body = (await call(patient, 'GET', url)).json();
    expect(body).toMatchObject({ success: true, status: 'waiting', timeRemaining: null, doctor_response_deadline: null });
    expect(typeof body.message).toBe('string');
    expect(body.data).toBeUndefined();

    await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/text_session:${id}/messages`,
      headers: await t.auth(patient),
      payload: { client_message_id: 'p1', type: 'text', body: 'Hello doctor' },
    });
    body = (await call(patient, 'GET', url)).json();
    expect(body.status).toBe('waiting');
    expect(Number.isInteger(body.timeRemaining)).toBe(true);
    expect(body.timeRemaining).toBeGreaterThan(290);
    expect(body.timeRemaining).toBeLessThanOrEqual(300);
    expect(typeof body.doctor_response_deadline).toBe('string');
    expect(Number.isInteger(body.remainingTimeMinutes)).toBe(true);
    expect(body.remainingSessions).toBe(3);

    // PUT status "active" from the detector does not activate: the doctor's first message does.
    const put = await call(patient, 'PUT', `/api/text-sessions/${id}/status`, { status: 'active' });
    expect(put.statusCode).toBe(200);
    expect(put.json().data.status).toBe('waiting_for_doctor');
    expect((await sessionRow(t, id)).activated_at).toBeNull();

    await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/text_session:${id}/messages`,
      headers: await t.auth(doctor),
      payload: { client_message_id: 'd1', type: 'text', body: 'Hello, how can I help?' },
    });
    body = (await call(patient, 'GET', `/api/text-sessions/text_session_${id}/check-response`)).json();
    expect(body).toMatchObject({ success: true, status: 'active', timeRemaining: null });
    const put2 = await call(doctor, 'PUT', `/api/text-sessions/${id}/status`, { status: 'active' });
    expect(put2.json().data.status).toBe('active');
  });

  it('check-response reports expiry applied on read (the doctor never answered)', async () => {
    const s = await liveSession(t, { modality: 'text', credits: { text: 2 } });
    await t.ctx.db
      .updateTable('sessions')
      .set({ patient_first_message_at: new Date(Date.now() - 10 * MIN), doctor_response_deadline: new Date(Date.now() - 5 * MIN) })
      .where('id', '=', s.session.id)
      .execute();
    const body = (await call(s.patient, 'GET', `/api/text-sessions/${s.session.id}/check-response`)).json();
    expect(body).toMatchObject({ success: true, status: 'expired', timeRemaining: null });
    expect((await sessionRow(t, s.session.id)).status).toBe('expired');
    expect(await ledgerOf(t, { session_id: s.session.id })).toHaveLength(0);
  });
});

describe('ending and billing', () => {
  it('a body-less JSON POST ends the session, settles it, and reads doctor_name/patient_name/duration/ids; a repeat is already_ended', async () => {
    const s = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 15 * MIN });
    const res = await call(s.patient, 'POST', `/api/text-sessions/${s.session.id}/end`);
    expect(res.statusCode, res.body).toBe(200);
    const d = res.json().data;
    expect(res.json().success).toBe(true);
    expect(typeof d.doctor_name).toBe('string');
    expect(typeof d.patient_name).toBe('string');
    expect(d.duration).toBe(15);
    expect(d.patient_id).toBe(s.patient.id);
    expect(d.doctor_id).toBe(s.doctor.id);
    expect(d.status).toBe('ended');
    const row = await sessionRow(t, s.session.id);
    expect(row.status).toBe('ended');
    expect(row.settled_at).not.toBeNull();
    // 15 active minutes: two started 10-minute units, as the core settles it.
    expect(await ledgerOf(t, { session_id: s.session.id })).toHaveLength(2);

    const again = await call(s.doctor, 'POST', `/api/text-sessions/text_session_${s.session.id}/end`);
    expect(again.statusCode).toBe(200);
    expect(again.json().data.status).toBe('already_ended');
    expect(await ledgerOf(t, { session_id: s.session.id })).toHaveLength(2);
    expectFailure(await call(await t.newDoctor(), 'POST', `/api/text-sessions/${s.session.id}/end`), 403);
  });

  it('auto-deduction answers what the server billed and never charges a unit twice', async () => {
    const s = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 25 * MIN });
    const first = await call(s.patient, 'POST', `/api/text-sessions/${s.session.id}/auto-deduction`, { triggered_by: 'frontend_timer' });
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json().data).toMatchObject({ deductions_processed: 2, total_deductions: 2, session_status: 'active' });
    const second = await call(s.patient, 'POST', `/api/text-sessions/${s.session.id}/auto-deduction`, {
      triggered_by: 'background_timer',
      deductions_requested: 3,
    });
    expect(second.json().data).toMatchObject({ deductions_processed: 0, total_deductions: 2 });
    expect(await ledgerOf(t, { session_id: s.session.id })).toHaveLength(2);
    expectFailure(await call(await t.newPatient(), 'POST', `/api/text-sessions/${s.session.id}/auto-deduction`, {}), 403);
  });
});

describe('lists', () => {
  it("active-sessions is how a doctor finds a waiting session; history is a paginator of the caller's finished ones", async () => {
    const doctor = await t.newDoctor();
    const patient = await patientWithCredits();
    const id = (await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id })).json().data.session_id as number;
    const active = (await call(doctor, 'GET', '/api/text-sessions/active-sessions')).json();
    expect(active.success).toBe(true);
    expect(Array.isArray(active.data)).toBe(true);
    expect(active.data).toHaveLength(1);
    expectTextSession(active.data[0], { id, patient, doctor });
    expect(active.data[0].status).toBe('waiting_for_doctor');
    expect(active.data[0].patient_name).toBe('Amina Banda');
    expect((await call(await t.newDoctor(), 'GET', '/api/text-sessions/active-sessions')).json().data).toEqual([]);

    await call(patient, 'POST', `/api/text-sessions/${id}/end`);
    expect((await call(doctor, 'GET', '/api/text-sessions/active-sessions')).json().data).toEqual([]);
    const history = (await call(patient, 'GET', '/api/text-sessions/history?page=1&per_page=20')).json();
    expect(history.success).toBe(true);
    expect(history.data).toMatchObject({ current_page: 1, last_page: 1, per_page: 20, total: 1 });
    expect(history.data.data[0].id).toBe(id);
    expect(typeof history.data.data[0].ended_at).toBe('string');
    const page2 = (await call(patient, 'GET', '/api/text-sessions/history?page=2&per_page=20')).json();
    expect(page2.data.data).toEqual([]);
  });

  it('available-doctors lists doctors with is_available_now', async () => {
    const busy = await t.newDoctor({ name: 'Busy Doctor' });
    const free = await t.newDoctor({ name: 'Free Doctor' });
    const patient = await patientWithCredits();
    await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: busy.id });
    const res = await call(patient, 'GET', '/api/text-sessions/available-doctors');
    expect(res.statusCode).toBe(200);
    const list = res.json().data as { id: number; first_name: string; is_available_now: boolean }[];
    expect(list.find((d) => d.id === busy.id)?.is_available_now).toBe(false);
    expect(list.find((d) => d.id === free.id)).toMatchObject({ first_name: 'Free', is_available_now: true });
  });

  it('create-from-appointment gives a due confirmed appointment its session (idempotent)', async () => {
    const a = await t.newAppointment({ appointment_type: 'text' });
    await grant(t, a.patient, { text: 2 });
    const body = { appointment_id: String(a.id), doctor_id: a.doctor.id, patient_id: a.patient.id, appointment_type: 'text', reason: 'x' };
    const res = await call(a.patient, 'POST', '/api/text-sessions/create-from-appointment', body);
    expect(res.statusCode, res.body).toBe(201);
    expectTextSession(res.json().data, { id: res.json().data.id, patient: a.patient, doctor: a.doctor });
    const again = await call(a.patient, 'POST', '/api/text-sessions/create-from-appointment', body);
    expect(again.statusCode).toBe(200);
    expect(again.json().data.id).toBe(res.json().data.id);
  });
});

describe('text-appointment calls through the guard', () => {
  async function textAppointmentWithSession() {
    const a = await t.newAppointment({ appointment_type: 'text' });
    await grant(t, a.patient, { text: 5 });
    const res = await call(a.patient, 'POST', '/api/text-appointments/start-session', {
      appointment_id: a.id,
      user_timezone: 'Africa/Blantyre',
    });
    expect(res.statusCode, res.body).toBe(200);
    return { a, data: res.json().data as Record<string, unknown> };
  }

  it('start-session gives the appointment its session and reads start_time/sessions_used; update-activity answers success', async () => {
    const { a, data } = await textAppointmentWithSession();
    expect(typeof data['start_time']).toBe('string');
    expect(data['sessions_used']).toBe(0);
    expect(typeof data['session_id']).toBe('number');
    const appt = await t.ctx.db.selectFrom('appointments').select('session_id').where('id', '=', a.id).executeTakeFirstOrThrow();
    expect(appt.session_id).toBe(data['session_id']);
    const act = await call(a.doctor, 'POST', '/api/text-appointments/update-activity', {
      appointment_id: String(a.id),
      user_timezone: 'UTC',
      user_type: 'doctor',
    });
    expect(act.statusCode).toBe(200);
    expect(act.json().success).toBe(true);
    expectFailure(
      await call(await t.newPatient(), 'POST', '/api/text-appointments/update-activity', { appointment_id: a.id, user_type: 'patient' }),
      403,
    );
  });

  it('phase 1: process-deduction and end-session are served through the session (would-block), never a second charge', async () => {
    const { a, data } = await textAppointmentWithSession();
    const sid = data['session_id'] as number;
    await t.ctx.db
      .updateTable('sessions')
      .set({ status: 'active', activated_at: new Date(Date.now() - 12 * MIN), patient_first_message_at: new Date(Date.now() - 12 * MIN) })
      .where('id', '=', sid)
      .execute();
    const ded = await call(a.patient, 'POST', '/api/text-appointments/process-deduction', {
      appointment_id: a.id,
      sessions_to_deduct: 3,
      reason: 'interval',
    });
    expect(ded.statusCode, ded.body).toBe(200);
    expect(ded.json().success).toBe(true);
    expect(ded.json().data.billed_through).toBe('session');
    expect(await ledgerOf(t, { session_id: sid })).toHaveLength(1);
    expect(await ledgerOf(t, { appointment_id: a.id })).toHaveLength(0); // no appointment-keyed charge beside the session's
    const end = await call(a.patient, 'POST', '/api/text-appointments/end-session', {
      appointment_id: a.id,
      sessions_to_deduct: 5,
      user_timezone: 'UTC',
    });
    expect(end.statusCode, end.body).toBe(200);
    expect((await sessionRow(t, sid)).status).toBe('ended');
    expect(await ledgerOf(t, { session_id: sid })).toHaveLength(2);
    const events = await t.ctx.db
      .selectFrom('guard_events')
      .selectAll()
      .where('appointment_id', '=', a.id)
      .where('guard', '=', 'billing')
      .execute();
    expect(events.map((e) => e.outcome)).toEqual(['would_block', 'would_block']);
  });

  it('phase 2: SESSION_BILLING_REQUIRED with a message a person understands, and nothing changes', async () => {
    const { a, data } = await textAppointmentWithSession();
    t.flags.set({ ENFORCE_SESSION_GATED_CHAT: true, ENFORCE_SESSION_GATED_BILLING: true });
    for (const [url, body] of [
      ['/api/text-appointments/process-deduction', { appointment_id: a.id, sessions_to_deduct: 1, reason: 'manual_end' }],
      ['/api/text-appointments/end-session', { appointment_id: a.id, sessions_to_deduct: 1 }],
    ] as const) {
      const b = expectFailure(await call(a.patient, 'POST', url, body), 400);
      expect(b.error_code).toBe('SESSION_BILLING_REQUIRED');
      expect(b.message).not.toMatch(/endpoint/);
      expect(b.message).toMatch(/billed automatically/);
      expect(b['session_id']).toBe(data['session_id']);
    }
    expect((await sessionRow(t, data['session_id'] as number)).status).toBe('waiting_for_doctor');
    expect(await ledgerOf(t, { session_id: data['session_id'] as number })).toHaveLength(0);
  });

  it("reason 'timeout' is refused with a readable message; the never-routed /{id}/end-session is a JSON 404", async () => {
    const { a } = await textAppointmentWithSession();
    const b = expectFailure(
      await call(a.patient, 'POST', '/api/text-appointments/process-deduction', {
        appointment_id: a.id,
        sessions_to_deduct: 1,
        reason: 'timeout',
      }),
      400,
    );
    expect(b.message).toMatch(/reason/);
    const nf = await call(a.patient, 'POST', `/api/text-appointments/${a.id}/end-session`);
    expectFailure(nf, 404);
    expect(nf.headers['content-type']).toMatch(/json/);
  });
});
