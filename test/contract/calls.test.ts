/**
 * The original app's call requests, sent as the app sends them — string ids,
 * `direct_session_<ms>` keys, fields nobody reads, the client's own duration — asserting every
 * field the app reads with its type. Voice and video; start, answer, decline, end by either side,
 * deduction, status; billing by the server's clock, never by what the client claims.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { usableCredits } from '../../src/modules/users/credits.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => {
  await t.close();
});

const MIN = 60_000;
let keySeq = Date.now();
const directKey = () => `direct_session_${++keySeq}`;

async function post(user: User, url: string, payload?: unknown) {
  const res = await t.app.inject({
    method: 'POST',
    url,
    headers: { ...(await t.auth(user)), 'content-type': 'application/json' },
    ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
  });
  return { status: res.statusCode, body: res.json() };
}
async function get(user: User, url: string) {
  const res = await t.app.inject({ method: 'GET', url, headers: await t.auth(user) });
  return { status: res.statusCode, body: res.json() };
}

/** The billing clock moved back: the call has been connected for `minutes` by the server's clock. */
async function connectedFor(sessionId: number, minutes: number) {
  await t.ctx.db
    .updateTable('sessions')
    .set({ connected_at: new Date(Date.now() - minutes * MIN) })
    .where('id', '=', sessionId)
    .execute();
}

function expectCallData(d: Record<string, unknown>) {
  expect(d).toMatchObject({
    session_id: expect.any(Number),
    call_session_id: expect.any(Number),
    session_context: expect.stringMatching(/^call_session:\d+$/),
    appointment_id: expect.any(String),
    call_type: expect.stringMatching(/^(voice|video)$/),
    status: expect.stringMatching(/^(connecting|active|ended)$/),
  });
  expect(new Date(d['started_at'] as string).toISOString()).toBe(d['started_at']);
}

describe('instant voice call', () => {
  let patient: User;
  let doctor: User;
  const key = directKey();

  beforeAll(async () => {
    patient = await t.newPatient();
    doctor = await t.newDoctor();
    await t.giveCredits(patient, { voice: 5 });
  });

  it('start: the key names the call, echoed as a string; a retry with the same key is the same call', async () => {
    const start = { call_type: 'voice', appointment_id: key, doctor_id: doctor.id, reason: 'cough' };
    const r = await post(patient, '/api/call-sessions/start', start);
    expect(r.status).toBe(200);
    expect(r.body.success).toBe(true);
    expectCallData(r.body.data);
    expect(r.body.data.appointment_id).toBe(key);
    expect(r.body.data.status).toBe('connecting');
    expect(r.body.data.call_type).toBe('voice');
    expect(r.body.appointment_id).toBe(key);
    expect(r.body.call_type).toBe('voice');
    expect(r.body.remaining_calls).toBe(5);
    expect(r.body.data.session_id).toBe(r.body.data.call_session_id);

    const again = await post(patient, '/api/call-sessions/start', start);
    expect(again.status).toBe(200);
    expect(again.body.data.session_id).toBe(r.body.data.session_id);
  });

  it('status by key, for the doctor too; a stranger is refused', async () => {
    const s = await get(doctor, `/api/call-sessions/${key}/status`);
    expect(s.status).toBe(200);
    expect(s.body.data).toMatchObject({
      appointment_id: key,
      status: 'connecting',
      is_connected: false,
      patient_id: patient.id,
      doctor_id: doctor.id,
    });
    const viaAppointment = await get(doctor, `/api/appointments/${key}/status`);
    expect(viaAppointment.body.data.call_session_id).toBe(s.body.data.call_session_id);
    const stranger = await t.newPatient();
    const refused = await get(stranger, `/api/call-sessions/${key}/status`);
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ success: false, message: expect.any(String) });
    const unknown = await get(doctor, `/api/call-sessions/${directKey()}/status`);
    expect(unknown.body).toEqual({ success: true, data: null });
  });

  it('the doctor answers: the call is active and the billing clock runs from now', async () => {
    const r = await post(doctor, '/api/call-sessions/answer', { appointment_id: key, caller_id: String(doctor.id), action: 'answered' });
    expect(r.status).toBe(200);
    expect(r.body.data).toMatchObject({ status: 'active', is_connected: true });
    expect(r.body.data.connected_at).not.toBeNull();
  });

  it('deduction answers what the server clock made due, once per unit', async () => {
    const sessionId = (await get(patient, `/api/call-sessions/${key}/status`)).body.data.session_id as number;
    await connectedFor(sessionId, 25);
    const payload = { appointment_id: key, call_type: 'voice', session_duration: 99_999, triggered_by: 'background_billing' };
    const first = await post(patient, '/api/call-sessions/deduction', payload);
    expect(first.status).toBe(200);
    expect(first.body.data).toMatchObject({ deductions_processed: 2, total_deductions: 2, remaining_calls: 3 });
    const second = await post(patient, '/api/call-sessions/deduction', payload);
    expect(second.body.data).toMatchObject({ deductions_processed: 0, total_deductions: 2, remaining_calls: 3 });
  });

  it('the doctor hangs up; what the client claims about duration is not billed', async () => {
    const r = await post(doctor, '/api/call-sessions/end', {
      call_type: 'voice',
      appointment_id: key,
      session_duration: 3,
      was_connected: false,
    });
    expect(r.status).toBe(200);
    expect(r.body.data).toMatchObject({ status: 'ended', was_connected: true, units_billed: 3 });
    expect(r.body.data.duration_seconds).toBeGreaterThanOrEqual(25 * 60);
    expect(await usableCredits(t.ctx.db, patient.id, 'voice')).toBe(2);
    // The patient's end arrives after: nothing more is charged.
    const late = await post(patient, '/api/call-sessions/end', {
      call_type: 'voice',
      appointment_id: key,
      session_duration: 9_000,
      was_connected: true,
    });
    expect(late.status).toBe(200);
    expect(late.body.data).toMatchObject({ status: 'ended', units_billed: 3 });
    expect(await usableCredits(t.ctx.db, patient.id, 'voice')).toBe(2);
  });
});

describe('scheduled video call', () => {
  it('start with the appointment id as a string, decline, call again, answer, the patient ends', async () => {
    const appt = await t.newAppointment({ appointment_type: 'video' });
    await t.giveCredits(appt.patient, { video: 2 });
    const start = { call_type: 'video', appointment_id: String(appt.id) };
    const r = await post(appt.patient, '/api/call-sessions/start', start);
    expect(r.status).toBe(200);
    expectCallData(r.body.data);
    expect(r.body).toMatchObject({ appointment_id: String(appt.id), call_type: 'video', remaining_calls: 2 });
    expect(r.body.data).toMatchObject({ appointment_id: String(appt.id), status: 'connecting', session_status: 'ringing' });

    const declined = await post(appt.doctor, '/api/call-sessions/decline', {
      appointment_id: String(appt.id),
      caller_id: String(appt.doctor.id),
      reason: 'declined_by_receiver',
      declined_by: 'doctor',
    });
    expect(declined.status).toBe(200);
    // A booked call stays bookable: back to waiting, and the patient may call again.
    expect(declined.body.data).toMatchObject({ status: 'connecting', session_status: 'waiting' });

    const again = await post(appt.patient, '/api/call-sessions/start', start);
    expect(again.body.data.session_id).toBe(r.body.data.session_id);
    const status = await get(appt.doctor, `/api/appointments/${appt.id}/status`);
    expect(status.body.data).toMatchObject({ session_status: 'ringing', call_type: 'video' });

    const answered = await post(appt.doctor, '/api/call-sessions/answer', { appointment_id: String(appt.id) });
    expect(answered.body.data.status).toBe('active');
    // Ended within the first minute: a connected call shorter than 60 s costs nothing.
    const ended = await post(appt.patient, '/api/call-sessions/end', {
      call_type: 'video',
      appointment_id: String(appt.id),
      session_duration: 1200,
      was_connected: true,
    });
    expect(ended.body.data).toMatchObject({ status: 'ended', units_billed: 0, was_connected: true });
    expect(await usableCredits(t.ctx.db, appt.patient.id, 'video')).toBe(2);
    const a = await t.ctx.db.selectFrom('appointments').select('status').where('id', '=', appt.id).executeTakeFirstOrThrow();
    expect(a.status).toBe('completed');
  });

  it('POST /appointments/{id}/end (body-less) ends the appointment through the guarded legacy end-session', async () => {
    const appt = await t.newAppointment({ appointment_type: 'voice' });
    await t.giveCredits(appt.patient, { voice: 2 });
    const start = await post(appt.patient, '/api/call-sessions/start', { call_type: 'voice', appointment_id: String(appt.id) });
    await post(appt.doctor, '/api/call-sessions/answer', { appointment_id: String(appt.id) });
    await connectedFor(start.body.data.session_id as number, 12);
    const r = await post(appt.patient, `/api/appointments/${appt.id}/end`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ success: true, message: expect.any(String), data: { billed_through: 'session', units_total: 2 } });
    const status = await get(appt.patient, `/api/appointments/${appt.id}/status`);
    expect(status.body.data).toMatchObject({ status: 'ended', session_status: 'ended' });
    expect(await usableCredits(t.ctx.db, appt.patient.id, 'voice')).toBe(0);
  });
});

describe('cancel and decline of an instant call', () => {
  it('the caller cancels before an answer: ended, nothing billed', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await t.giveCredits(patient, { voice: 1 });
    const key = directKey();
    await post(patient, '/api/call-sessions/start', { call_type: 'voice', appointment_id: key, doctor_id: doctor.id });
    const r = await post(patient, '/api/call-sessions/end', {
      call_type: 'voice',
      appointment_id: key,
      session_duration: 0,
      was_connected: false,
    });
    expect(r.body.data).toMatchObject({ status: 'ended', end_reason: 'caller_cancelled', was_connected: false, units_billed: 0 });
  });

  it('the callee ends a ringing call (the services decline with /end): declined', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await t.giveCredits(patient, { video: 1 });
    const key = directKey();
    await post(patient, '/api/call-sessions/start', { call_type: 'video', appointment_id: key, doctor_id: doctor.id });
    const r = await post(doctor, '/api/call-sessions/end', {
      call_type: 'video',
      appointment_id: key,
      session_duration: 0,
      was_connected: false,
    });
    expect(r.body.data).toMatchObject({ status: 'ended', end_reason: 'declined', units_billed: 0 });
  });
});

describe('refusals stop the app: non-2xx with a human message', () => {
  it('no credit, a busy doctor, a stranger, bad input', async () => {
    const doctor = await t.newDoctor();
    const broke = await t.newPatient();
    const noCredit = await post(broke, '/api/call-sessions/start', {
      call_type: 'voice',
      appointment_id: directKey(),
      doctor_id: doctor.id,
    });
    expect(noCredit.status).toBe(402);
    expect(noCredit.body).toMatchObject({ success: false, message: expect.stringMatching(/credit/i) });

    const first = await t.newPatient();
    await t.giveCredits(first, { voice: 1 });
    expect(
      (await post(first, '/api/call-sessions/start', { call_type: 'voice', appointment_id: directKey(), doctor_id: doctor.id })).status,
    ).toBe(200);
    const second = await t.newPatient();
    await t.giveCredits(second, { voice: 1 });
    const busy = await post(second, '/api/call-sessions/start', { call_type: 'voice', appointment_id: directKey(), doctor_id: doctor.id });
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({ success: false, message: 'Doctor is currently in another session' });

    const noDoctor = await post(second, '/api/call-sessions/start', { call_type: 'voice', appointment_id: directKey() });
    expect(noDoctor.status).toBe(400);
    expect(noDoctor.body.message).toMatch(/doctor_id/);
    const badType = await post(second, '/api/call-sessions/start', { call_type: 'fax', appointment_id: directKey(), doctor_id: doctor.id });
    expect(badType.status).toBe(400);
    expect(badType.body.success).toBe(false);

    const text = await t.newAppointment({ appointment_type: 'text' });
    const notACall = await post(text.patient, '/api/call-sessions/start', { call_type: 'voice', appointment_id: String(text.id) });
    expect(notACall.status).toBe(400);
    expect(notACall.body.message).toMatch(/text consultation/);
    expect((await get(text.patient, `/api/appointments/${text.id}/status`)).body).toEqual({ success: true, data: null });

    const video = await t.newAppointment({ appointment_type: 'video' });
    const stranger = await t.newPatient();
    const foreign = await post(stranger, '/api/call-sessions/start', { call_type: 'video', appointment_id: String(video.id) });
    expect(foreign.status).toBe(403);
    const unknownAnswer = await post(stranger, '/api/call-sessions/answer', { appointment_id: directKey() });
    expect(unknownAnswer.status).toBe(404);
    expect(unknownAnswer.body.message).toEqual(expect.any(String));
  });

  it('without a token: 401', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/call-sessions/start',
      payload: { call_type: 'voice', appointment_id: directKey() },
    });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ success: false, message: expect.any(String) });
  });
});

describe('OpenAPI', () => {
  it("documents every call route under the original contract's tag, deprecated", async () => {
    const doc = (await t.app.inject({ url: '/docs/json' })).json() as {
      paths: Record<string, Record<string, { tags?: string[]; deprecated?: boolean; summary?: string }>>;
    };
    const routes: [string, string][] = [
      ['/api/call-sessions/start', 'post'],
      ['/api/call-sessions/answer', 'post'],
      ['/api/call-sessions/decline', 'post'],
      ['/api/call-sessions/end', 'post'],
      ['/api/call-sessions/deduction', 'post'],
      ['/api/call-sessions/{key}/status', 'get'],
      ['/api/appointments/{id}/status', 'get'],
      ['/api/appointments/{id}/end', 'post'],
    ];
    for (const [path, method] of routes) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path}`).toBeDefined();
      expect(op).toMatchObject({ tags: ['original'], deprecated: true, summary: expect.any(String) });
    }
  });
});
