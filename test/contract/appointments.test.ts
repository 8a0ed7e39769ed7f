/**
 * The original client contract, appointments: each call is
 * sent the way the app in the stores sends it, and every field the app reads is asserted with
 * its type.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

// What the app's axios client (A) sends besides the token.
const APP_HEADERS = { accept: 'application/json', 'x-app-version': '1.1.3', 'x-platform': 'android' };
const as = async (u: User) => ({ ...APP_HEADERS, ...(await t.auth(u)) });

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIME = /^\d{2}:\d{2}(:\d{2})?$/;

/** A date `days` ahead, as the patient's device in Blantyre (UTC+2, no DST) writes it. */
function blantyreDate(days: number): string {
  return new Date(Date.now() + 2 * 3600_000 + days * 86400_000).toISOString().slice(0, 10);
}

/** A failure as client A reads it: JSON, `success:false`, a human `message`. */
function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }, status: number) {
  expect(res.statusCode).toBe(status);
  expect(String(res.headers['content-type'])).toMatch(/json/);
  const body = res.json() as { success: unknown; message: unknown };
  expect(body.success).toBe(false);
  expect(typeof body.message).toBe('string');
  expect((body.message as string).length).toBeGreaterThan(5);
  return body as { success: false; message: string; error_code?: string };
}

/** The fields the dashboards and my-appointments read from a list item, with their types. */
function expectListItem(item: Record<string, unknown>) {
  expect(typeof item.id).toBe('number');
  expect(typeof item.patient_id).toBe('number');
  expect(typeof item.doctor_id).toBe('number');
  expect(typeof item.status).toBe('number');
  expect(typeof item.appointment_type).toBe('string');
  expect(item.appointment_date).toMatch(DATE);
  expect(item.appointment_time).toMatch(TIME);
  expect(item.appointment_datetime_utc).toMatch(ISO);
  expect(typeof item.user_timezone).toBe('string');
  expect(item.session_id === null || typeof item.session_id === 'number').toBe(true);
  expect(item.call_unlocked_at === null || ISO.test(item.call_unlocked_at as string)).toBe(true);
  expect(item.reason === null || typeof item.reason === 'string').toBe(true);
  expect(typeof item.doctorName).toBe('string');
  expect(typeof item.patientName).toBe('string');
  expect(typeof item.doctor_name).toBe('string');
  expect(item.created_at).toMatch(ISO);
  expect(item.date).toBe(item.appointment_date);
  expect(item.time).toBe(item.appointment_time);
  expect(item.sessionId).toBe(item.session_id);
  for (const who of ['doctor', 'patient'] as const) {
    const p = item[who] as Record<string, unknown>;
    expect(typeof p.id).toBe('number');
    expect(typeof p.first_name).toBe('string');
    expect(typeof p.last_name).toBe('string');
    for (const k of ['gender', 'country', 'city', 'date_of_birth', 'profile_picture', 'profile_picture_url']) expect(k in p).toBe(true);
  }
}

async function list(u: User) {
  const res = await t.app.inject({ url: '/api/appointments', headers: await as(u) });
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json();
  expect(body.success).toBe(true);
  // The app reads `data.data ‖ data`.
  const page = body.data;
  for (const k of ['current_page', 'last_page', 'per_page', 'total']) expect(typeof page[k]).toBe('number');
  expect(Array.isArray(page.data)).toBe(true);
  for (const item of page.data) expectListItem(item);
  return page.data as Record<string, unknown>[];
}

describe('POST /appointments — book', () => {
  it('books with date + time + zone, ignores unknown fields, answers 201 with the item in the app’s shape', async () => {
    const patient = await t.newPatient({ name: 'Grace Banda', timezone: 'UTC' });
    await t.giveCredits(patient, { text: 3, voice: 3, video: 3 }); // booking needs a credit of the type
    const doctor = await t.newDoctor({ name: 'Chikondi Phiri', country: 'MW' });
    const date = blantyreDate(3);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/appointments',
      headers: { ...(await as(patient)), 'content-type': 'application/json' },
      payload: {
        doctor_id: doctor.id,
        appointment_date: date,
        appointment_time: '14:30',
        user_timezone: 'Africa/Blantyre',
        appointment_type: 'text',
        reason: 'Headache for three days',
        // fields the app sends that the contract ignores
        cancellation_reason: null,
        user_type: 'patient',
      },
    });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json();
    expect(body.success).toBe(true);
    expect(typeof body.message).toBe('string');
    const a = body.data;
    expectListItem(a);
    expect(a.status).toBe(0);
    expect(a.appointment_date).toBe(date);
    expect(a.appointment_time).toBe('14:30:00');
    expect(a.user_timezone).toBe('Africa/Blantyre');
    // 14:30 in Blantyre (UTC+2) is 12:30 UTC.
    expect(a.appointment_datetime_utc).toBe(`${date}T12:30:00.000Z`);
    expect(a.doctorName).toBe('Chikondi Phiri');
    expect(a.doctor).toMatchObject({ id: doctor.id, first_name: 'Chikondi', last_name: 'Phiri' });
    expect(a.patient).toMatchObject({ id: patient.id, first_name: 'Grace', last_name: 'Banda' });
    expect(a.session_id).toBeNull();

    // It is the core's appointment: sessiongate's own API sees the same instant.
    const v2 = await t.app.inject({ url: `/api/v2/appointments/${a.id}`, headers: await t.auth(patient) });
    expect(v2.json().data).toMatchObject({ scheduled_at: `${date}T12:30:00.000Z`, status: 'pending', patient_timezone: 'Africa/Blantyre' });
  });

  it('accepts HH:mm:ss, a doctor_id as a string, a voice type, and no user_timezone (profile zone)', async () => {
    const patient = await t.newPatient({ timezone: 'Africa/Johannesburg' });
    await t.giveCredits(patient, { text: 3, voice: 3, video: 3 }); // booking needs a credit of the type
    const doctor = await t.newDoctor();
    const date = blantyreDate(4);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/appointments',
      headers: await as(patient),
      payload: { doctor_id: String(doctor.id), appointment_date: date, appointment_time: '09:05:00', appointment_type: 'voice' },
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().data).toMatchObject({
      appointment_type: 'voice',
      appointment_time: '09:05:00',
      user_timezone: 'Africa/Johannesburg',
    });
    expect(res.json().data.appointment_datetime_utc).toBe(`${date}T07:05:00.000Z`);
  });

  it('refuses with a message a patient understands: past time, taken slot, missing date, unknown zone, not a patient', async () => {
    const patient = await t.newPatient();
    await t.giveCredits(patient, { text: 3, voice: 3, video: 3 }); // booking needs a credit of the type
    const doctor = await t.newDoctor();
    const headers = await as(patient);
    const book = (payload: Record<string, unknown>, h: Record<string, string> = headers) =>
      t.app.inject({ method: 'POST', url: '/api/appointments', headers: h, payload });
    const base = {
      doctor_id: doctor.id,
      appointment_date: blantyreDate(5),
      appointment_time: '10:00',
      user_timezone: 'Africa/Blantyre',
      appointment_type: 'text',
    };

    const past = expectProblem(await book({ ...base, appointment_date: blantyreDate(-2) }), 400);
    expect(past.message).toMatch(/future/i);
    expect(past.message).not.toMatch(/scheduled_at/);

    expect((await book(base)).statusCode).toBe(201);
    const other = await t.newPatient();
    await t.giveCredits(other, { text: 3, voice: 3, video: 3 }); // booking needs a credit of the type
    const taken = expectProblem(await book(base, await as(other)), 409);
    expect(taken.message).toMatch(/already booked/i);

    const missing = expectProblem(await book({ ...base, appointment_date: undefined }), 400);
    expect(missing.message).toMatch(/appointment date/i);

    const badTime = expectProblem(await book({ ...base, appointment_time: '25:00' }), 400);
    expect(badTime.message).toMatch(/appointment time/i);

    const zone = expectProblem(await book({ ...base, appointment_time: '11:00', user_timezone: 'Mars/Olympus' }), 400);
    expect(zone.message).toMatch(/time zone/i);

    const impossible = expectProblem(await book({ ...base, appointment_date: '2031-02-30' }), 400);
    expect(impossible.message).toMatch(/2031-02-30/);

    expectProblem(await book(base, await as(doctor)), 403);
    expectProblem(await book({ ...base, doctor_id: patient.id, appointment_time: '12:00' }), 404);
    expectProblem(await t.app.inject({ method: 'POST', url: '/api/appointments', payload: base }), 401);
  });
});

describe('GET /appointments — the dashboards’ list', () => {
  it('maps every status to the app’s number and shows both sides the same appointment', async () => {
    const patient = await t.newPatient({ timezone: 'Africa/Blantyre' });
    const doctor = await t.newDoctor();
    const expected = { pending: 0, confirmed: 1, cancelled: 2, completed: 3, in_progress: 7, expired: 2, missed: 2 } as const;
    const ids: Record<string, number> = {};
    let i = 0;
    for (const status of Object.keys(expected) as (keyof typeof expected)[]) {
      const a = await t.newAppointment({ patient, doctor, status, scheduled_at: new Date(Date.now() + ++i * 3600_000) });
      ids[status] = a.id;
    }
    const forPatient = await list(patient);
    const forDoctor = await list(doctor);
    expect(forPatient.map((a) => a.id).sort()).toEqual(Object.values(ids).sort());
    expect(forDoctor.map((a) => a.id).sort()).toEqual(Object.values(ids).sort());
    for (const [status, n] of Object.entries(expected)) {
      expect(forPatient.find((a) => a.id === ids[status])!.status).toBe(n);
      expect(forDoctor.find((a) => a.id === ids[status])!.status).toBe(n);
    }
    // The doctor dashboard's confirmed list: `status === 1 || status === 3`.
    expect(
      forDoctor
        .filter((a) => a.status === 1 || a.status === 3)
        .map((a) => a.id)
        .sort(),
    ).toEqual([ids.confirmed, ids.completed].sort());
    // Latest first, as Laravel ordered them.
    const times = forPatient.map((a) => a.appointment_datetime_utc as string);
    expect([...times].sort().reverse()).toEqual(times);
    // The patient's zone: wall clock of the instant in Africa/Blantyre.
    const one = forPatient[0]!;
    const utc = new Date(one.appointment_datetime_utc as string);
    const local = new Date(utc.getTime() + 2 * 3600_000).toISOString();
    expect(one.appointment_date).toBe(local.slice(0, 10));
    expect(one.appointment_time).toBe(local.slice(11, 19));
    expect(one.user_timezone).toBe('Africa/Blantyre');
  });

  it('pages like Laravel (`page`, `per_page`, total)', async () => {
    const patient = await t.newPatient();
    for (let k = 1; k <= 3; k++) await t.newAppointment({ patient, status: 'pending', scheduled_at: new Date(Date.now() + k * 86400_000) });
    const res = await t.app.inject({ url: '/api/appointments?page=2&per_page=2', headers: await as(patient) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toMatchObject({ current_page: 2, last_page: 2, per_page: 2, total: 3 });
    expect(res.json().data.data).toHaveLength(1);
  });

  it('names the text session in `session_id` once it exists, and unlocks a call appointment with `call_unlocked_at`', async () => {
    const patient = await t.newPatient();
    const text = await t.newAppointment({ patient, appointment_type: 'text' });
    const video = await t.newAppointment({ appointment_type: 'video', scheduled_at: new Date(Date.now() + 5 * 60_000) });
    await t.giveCredits(patient, { text: 1 });
    await t.giveCredits(video.patient, { video: 1 });
    let item = (await list(patient)).find((a) => a.id === text.id)!;
    expect(item.session_id).toBeNull();
    expect(item.call_unlocked_at).toBeNull();

    const started = await t.app.inject({
      method: 'POST',
      url: `/api/appointments/${text.id}/start-session`,
      headers: await as(patient),
      payload: { modality: 'text' },
    });
    expect(started.statusCode, started.body).toBe(201);
    const sessionId = started.json().data.session_id;
    item = (await list(patient)).find((a) => a.id === text.id)!;
    expect(item.session_id).toBe(sessionId);
    expect(item.status).toBe(7);
    // The dashboard opens `text_session_{session_id}`; that context names this session in the core.
    const v2 = await t.app.inject({ url: `/api/v2/sessions/text_session_${sessionId}`, headers: await t.auth(patient) });
    expect(v2.json().data).toMatchObject({ appointment_id: text.id, kind: 'text' });

    const call = await t.app.inject({
      method: 'POST',
      url: `/api/appointments/${video.id}/start-session`,
      headers: await as(video.patient),
      payload: { modality: 'video' },
    });
    expect(call.statusCode, call.body).toBe(201);
    const callItem = (await list(video.doctor)).find((a) => a.id === video.id)!;
    expect(callItem.session_id).toBeNull();
    expect(callItem.call_unlocked_at).toMatch(ISO);
  });

  it('401 without a token, as JSON', async () => {
    expectProblem(await t.app.inject({ url: '/api/appointments', headers: APP_HEADERS }), 401);
  });
});

describe('PATCH /doctor/appointments/{id}/status — accept / reject', () => {
  it('confirmed → 1, cancelled → 2; only the appointment’s doctor', async () => {
    const a = await t.newAppointment({ status: 'pending', scheduled_at: new Date(Date.now() + 86400_000) });
    const patch = async (u: User, status: string, id = a.id) =>
      t.app.inject({ method: 'PATCH', url: `/api/doctor/appointments/${id}/status`, headers: await as(u), payload: { status } });

    expectProblem(await patch(await t.newDoctor(), 'confirmed'), 403);
    expectProblem(await patch(a.patient, 'confirmed'), 403);
    expectProblem(await patch(a.doctor, 'confirmed', 999999), 404);
    expectProblem(await patch(a.doctor, 'maybe'), 400);

    const ok = await patch(a.doctor, 'confirmed');
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ success: true, data: { id: a.id, status: 1 } });
    expect(typeof ok.json().message).toBe('string');
    expect((await list(a.doctor)).find((x) => x.id === a.id)!.status).toBe(1);

    const b = await t.newAppointment({ doctor: a.doctor, status: 'pending', scheduled_at: new Date(Date.now() + 2 * 86400_000) });
    const rejected = await patch(a.doctor, 'cancelled', b.id);
    expect(rejected.statusCode, rejected.body).toBe(200);
    expect(rejected.json()).toMatchObject({ success: true, data: { id: b.id, status: 2 } });
  });

  it('a booking whose time has passed cannot be accepted, and the doctor is told why', async () => {
    const a = await t.newAppointment({ status: 'pending', scheduled_at: new Date(Date.now() - 3600_000) });
    const res = await t.app.inject({
      method: 'PATCH',
      url: `/api/doctor/appointments/${a.id}/status`,
      headers: await as(a.doctor),
      payload: { status: 'confirmed' },
    });
    expect(expectProblem(res, 409).message).toMatch(/passed/);
  });
});

describe('GET /appointments/{id} — details', () => {
  it('the flat details shape with the other names', async () => {
    const patient = await t.newPatient({ name: 'Thoko Mwale', timezone: 'Africa/Blantyre' });
    const doctor = await t.newDoctor({ name: 'Dr Kondwani Banda' });
    const a = await t.newAppointment({ patient, doctor, status: 'confirmed', scheduled_at: new Date('2031-06-01T08:15:00Z') });
    const res = await t.app.inject({ url: `/api/appointments/${a.id}`, headers: await as(patient) });
    expect(res.statusCode, res.body).toBe(200);
    const d = res.json().data;
    expect(res.json().success).toBe(true);
    expect(d.doctor_name).toBe('Dr Kondwani Banda');
    expect(d.patient_name).toBe('Thoko Mwale');
    expect(d.date).toBe('2031-06-01');
    expect(d.time).toBe('10:15:00');
    expect(d.appointment_date).toBe('2031-06-01');
    expect(d.appointment_time).toBe('10:15:00');
    expect(['1', 'confirmed']).toContain(String(d.status));
    expect(d.appointment_type).toBe('text');
    expect(d.consultation_type).toBe('text');
    expect(d.session_id).toBeNull();
    expect(d.doctor_id).toBe(doctor.id);
    expect(d.patient_id).toBe(patient.id);
    expect(d.user_timezone).toBe('Africa/Blantyre');
    expect(typeof d.sessions_deducted).toBe('number');
    for (const k of [
      'reason',
      'notes',
      'call_unlocked_at',
      'actual_start_time',
      'actual_end_time',
      'completed_at',
      'created_at',
      'updated_at',
    ]) {
      expect(k in d).toBe(true);
    }
  });

  it('404 unknown, 403 for someone else’s appointment, ids as the app sends them', async () => {
    const a = await t.newAppointment({});
    expectProblem(await t.app.inject({ url: '/api/appointments/987654', headers: await as(a.patient) }), 404);
    expectProblem(await t.app.inject({ url: `/api/appointments/${a.id}`, headers: await as(await t.newPatient()) }), 403);
    expectProblem(await t.app.inject({ url: '/api/appointments/abc', headers: await as(a.patient) }), 400);
  });
});

describe('cancel', () => {
  it('PATCH {status: 2, cancellation_reason, cancelled_by} cancels; DELETE cancels; a gone appointment is 404', async () => {
    const a = await t.newAppointment({ status: 'confirmed', scheduled_at: new Date(Date.now() + 86400_000) });
    const res = await t.app.inject({
      method: 'PATCH',
      url: `/api/appointments/${a.id}`,
      headers: await as(a.patient),
      payload: { status: 2, cancellation_reason: 'Feeling better', cancelled_by: 'patient' },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ success: true, data: { id: a.id, status: 2 } });

    const b = await t.newAppointment({ status: 'pending', scheduled_at: new Date(Date.now() + 86400_000) });
    const del = await t.app.inject({ method: 'DELETE', url: `/api/appointments/${b.id}`, headers: await as(b.doctor) });
    expect(del.statusCode, del.body).toBe(200);
    expect(del.json()).toMatchObject({ success: true, data: { status: 2 } });
    expect(typeof del.json().message).toBe('string');
    expectProblem(await t.app.inject({ method: 'DELETE', url: '/api/appointments/876543', headers: await as(b.doctor) }), 404);
  });

  it('the patch the app never sends successfully (`status: "expired"`) and rescheduling are refused with a reason', async () => {
    const a = await t.newAppointment({ status: 'pending', scheduled_at: new Date(Date.now() + 86400_000) });
    const headers = await as(a.patient);
    const expired = expectProblem(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/appointments/${a.id}`,
        headers,
        payload: { status: 'expired', reschedule_pending: false },
      }),
      400,
    );
    expect(expired.message).toMatch(/cancel/i);
    const moved = expectProblem(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/appointments/${a.id}`,
        headers,
        payload: { appointment_date: '2031-01-01', appointment_time: '10:00' },
      }),
      400,
    );
    expect(moved.message).toMatch(/book a new/i);
    // Nothing changed.
    expect((await list(a.patient)).find((x) => x.id === a.id)!.status).toBe(0);
  });

  it('a started consultation cannot be cancelled', async () => {
    const a = await t.newAppointment({ appointment_type: 'text' });
    await t.giveCredits(a.patient, { text: 1 });
    const headers = await as(a.patient);
    expect((await t.app.inject({ method: 'POST', url: `/api/appointments/${a.id}/start-session`, headers, payload: {} })).statusCode).toBe(
      201,
    );
    const res = await t.app.inject({ method: 'PATCH', url: `/api/appointments/${a.id}`, headers, payload: { status: 2 } });
    expect(expectProblem(res, 409).message).toMatch(/end the session/i);
  });
});

describe('POST /appointments/{id}/start-session', () => {
  it('text: the converter’s request gets top-level context_type + context_id and data.session_id; idempotent', async () => {
    const a = await t.newAppointment({ appointment_type: 'text' });
    await t.giveCredits(a.patient, { text: 2 });
    const headers = { ...(await as(a.patient)), 'x-user-timezone': 'Africa/Blantyre' };
    const first = await t.app.inject({
      method: 'POST',
      url: `/api/appointments/${a.id}/start-session`,
      headers,
      payload: { modality: 'text' },
    });
    expect(first.statusCode, first.body).toBe(201);
    const body = first.json();
    expect(body.success).toBe(true);
    expect(body.context_type).toBe('text_session');
    expect(typeof body.context_id).toBe('number');
    expect(body.data).toMatchObject({
      appointment_id: a.id,
      session_id: body.context_id,
      session_context: `text_session:${body.context_id}`,
      appointment_type: 'text',
    });
    // Then the app reads GET /text-sessions/{session_id}: the core knows that session.
    const s = await t.app.inject({ url: `/api/v2/sessions/text_session:${body.data.session_id}`, headers: await t.auth(a.patient) });
    expect(s.json().data).toMatchObject({ status: 'waiting_for_doctor', appointment_id: a.id });

    // Every 60 s the converter asks again: the same session, no second one.
    const again = await t.app.inject({
      method: 'POST',
      url: `/api/appointments/${a.id}/start-session`,
      headers: { ...headers, 'content-type': 'application/json' },
      payload: '',
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().context_id).toBe(body.context_id);
    // Older builds send no body and no Content-Type at all.
    const bare = await t.app.inject({ method: 'POST', url: `/api/appointments/${a.id}/start-session`, headers: await as(a.doctor) });
    expect(bare.statusCode, bare.body).toBe(200);
    expect(bare.json().data.session_id).toBe(body.context_id);
  });

  it('too early, not confirmed, no credits, or not a participant: a 4xx with a message', async () => {
    const early = await t.newAppointment({ scheduled_at: new Date(Date.now() + 2 * 3600_000) });
    await t.giveCredits(early.patient, { text: 1 });
    const start = async (u: User, id: number) =>
      t.app.inject({ method: 'POST', url: `/api/appointments/${id}/start-session`, headers: await as(u), payload: { modality: 'text' } });
    expect(expectProblem(await start(early.patient, early.id), 409).message).toMatch(/15 minutes/);

    const pending = await t.newAppointment({ status: 'pending' });
    await t.giveCredits(pending.patient, { text: 1 });
    expect(expectProblem(await start(pending.patient, pending.id), 409).message).toMatch(/pending/);

    const broke = await t.newAppointment({});
    expect(expectProblem(await start(broke.patient, broke.id), 402).message).toMatch(/credits/);

    expectProblem(await start(await t.newPatient(), broke.id), 403);
  });
});

describe('GET /appointments/{id}/session', () => {
  it('answers the original poll shape before and after the session exists', async () => {
    const a = await t.newAppointment({ appointment_type: 'text' });
    await t.giveCredits(a.patient, { text: 1 });
    const headers = await as(a.doctor);
    const before = await t.app.inject({ url: `/api/appointments/${a.id}/session`, headers });
    expect(before.statusCode, before.body).toBe(200);
    expect(before.json().data).toEqual({
      appointment_id: a.id,
      session_id: null,
      session_context: null,
      status: 1,
      appointment_status: 'confirmed',
      appointment_type: 'text',
      session_status: null,
      doctor_response_deadline: null,
    });
    await t.app.inject({ method: 'POST', url: `/api/appointments/${a.id}/start-session`, headers: await as(a.patient), payload: {} });
    const after = (await t.app.inject({ url: `/api/appointments/${a.id}/session`, headers })).json().data;
    expect(typeof after.session_id).toBe('number');
    expect(after).toMatchObject({ status: 7, session_context: `text_session:${after.session_id}`, session_status: 'waiting_for_doctor' });
    expectProblem(await t.app.inject({ url: `/api/appointments/${a.id}/session`, headers: await as(await t.newDoctor()) }), 403);
  });
});

describe('slot picker helpers', () => {
  it('booked-slots lists the doctor’s taken times on the date as HH:MM in the patient’s zone', async () => {
    const doctor = await t.newDoctor();
    const patient = await t.newPatient({ timezone: 'Africa/Blantyre' });
    await t.giveCredits(patient, { text: 3, voice: 3, video: 3 }); // booking needs a credit of the type
    const date = blantyreDate(6);
    for (const time of ['08:00', '14:30']) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/appointments',
        headers: await as(patient),
        payload: {
          doctor_id: doctor.id,
          appointment_date: date,
          appointment_time: time,
          user_timezone: 'Africa/Blantyre',
          appointment_type: 'text',
        },
      });
      expect(res.statusCode, res.body).toBe(201);
    }
    const other = await t.newPatient({ timezone: 'Africa/Blantyre' });
    const res = await t.app.inject({ url: `/api/doctors/${doctor.id}/booked-slots?date=${date}`, headers: await as(other) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().success).toBe(true);
    expect(res.json().data.booked_times).toEqual(['08:00', '14:30']);
    // Seen from UTC, 08:00 Blantyre is 06:00 the same day.
    const utc = await t.app.inject({
      url: `/api/doctors/${doctor.id}/booked-slots?date=${date}&user_timezone=UTC`,
      headers: await as(other),
    });
    expect(utc.json().data.booked_times).toEqual(['06:00', '12:30']);
    expectProblem(await t.app.inject({ url: `/api/doctors/${doctor.id}/booked-slots?date=tomorrow`, headers: await as(other) }), 400);
  });

  it('availability: every day open, is_available_now false while the doctor is in a live session', async () => {
    const a = await t.newAppointment({ appointment_type: 'text' });
    await t.giveCredits(a.patient, { text: 1 });
    const headers = await as(await t.newPatient());
    const read = async () => {
      const res = await t.app.inject({ url: `/api/doctors/${a.doctor.id}/availability`, headers });
      expect(res.statusCode, res.body).toBe(200);
      const d = res.json().data;
      for (const day of ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday']) {
        expect(typeof d.working_hours[day].enabled).toBe('boolean');
        expect(Array.isArray(d.working_hours[day].slots)).toBe(true);
        for (const s of d.working_hours[day].slots)
          expect(s).toEqual({ start: expect.stringMatching(TIME), end: expect.stringMatching(TIME) });
      }
      return d.is_available_now as boolean;
    };
    expect(await read()).toBe(true);
    await t.app.inject({ method: 'POST', url: `/api/appointments/${a.id}/start-session`, headers: await as(a.patient), payload: {} });
    expect(await read()).toBe(false);
    expectProblem(await t.app.inject({ url: `/api/doctors/${a.patient.id}/availability`, headers }), 404);
  });
});
