import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { SignJWT } from 'jose';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

const future = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();

describe('health and docs', () => {
  it('is live and ready, and serves OpenAPI', async () => {
    expect((await t.app.inject('/health/live')).statusCode).toBe(200);
    const ready = await t.app.inject('/health/ready');
    expect(ready.statusCode).toBe(200);
    expect(ready.json().database).toBe(t.ctx.database.kind);
    const doc = (await t.app.inject('/docs/json')).json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toContain('/api/v2/appointments/{id}/session');
  });

  it('readiness is 503 while draining', async () => {
    t.app.draining.value = true;
    try {
      expect((await t.app.inject('/health/ready')).statusCode).toBe(503);
    } finally {
      t.app.draining.value = false;
    }
  });

  it('exports HTTP and flag metrics', async () => {
    const body = (await t.app.inject('/metrics')).body;
    expect(body).toContain('http_requests_total');
    expect(body).toContain('feature_flag_enabled{flag="ENFORCE_SESSION_GATED_CHAT"} 0');
    expect(body).toContain('rollout_phase 1');
  });
});

describe('authentication', () => {
  it('rejects missing, malformed, expired, wrongly signed and alg:none tokens with 401', async () => {
    const patient = await t.newPatient();
    const expired = await t.token(patient, -10);
    const wrongKey = await new SignJWT({ role: 'patient' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(String(patient.id))
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('another-secret-another-secret-another'));
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
      JSON.stringify({ sub: String(patient.id), role: 'admin', exp: Math.floor(Date.now() / 1000) + 600 }),
    ).toString('base64url')}.`;
    for (const authorization of [undefined, 'Bearer', 'Basic abc', `Bearer ${expired}`, `Bearer ${wrongKey}`, `Bearer ${none}`]) {
      const res = await t.app.inject({ url: '/api/v2/me', headers: authorization ? { authorization } : {} });
      expect(res.statusCode, String(authorization)).toBe(401);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ success: false, error_code: 'UNAUTHENTICATED', status: 401 });
    }
  });

  it('answers /api/v2/me for a valid token and 403 for a wrong role', async () => {
    const patient = await t.newPatient({ timezone: 'Africa/Blantyre' });
    const me = await t.app.inject({ url: '/api/v2/me', headers: await t.auth(patient) });
    expect(me.json().data).toMatchObject({ id: patient.id, role: 'patient', timezone: 'Africa/Blantyre' });
    const res = await t.app.inject({ url: '/api/v2/admin/flags', headers: await t.auth(patient) });
    expect(res.statusCode).toBe(403);
    expect(res.json().error_code).toBe('FORBIDDEN');
  });
});

describe('administration', () => {
  it('creates users, validates input, grants subscriptions idempotently', async () => {
    const admin = await t.newAdmin();
    const headers = await t.auth(admin);
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/v2/admin/users',
      headers,
      payload: { role: 'patient', name: 'Ada', timezone: 'Africa/Lagos' },
    });
    expect(created.statusCode).toBe(201);
    const userId = created.json().data.id as number;

    for (const payload of [
      { role: 'king', name: 'x' },
      { role: 'patient' },
      { role: 'patient', name: 'x', extra: 1 },
      { role: 'patient', name: 'x', timezone: 'Mars/Olympus' },
    ]) {
      const bad = await t.app.inject({ method: 'POST', url: '/api/v2/admin/users', headers, payload });
      expect(bad.statusCode, JSON.stringify(payload)).toBe(400);
      expect(bad.json().error_code).toBe('VALIDATION_FAILED');
    }

    const plans = await t.ctx.db
      .insertInto('plans')
      .values({ name: 'Admin test plan', text_credits: 2, voice_credits: 1, validity_days: 10 })
      .returning('id')
      .executeTakeFirstOrThrow();
    const grant = { user_id: userId, plan_id: plans.id, payment_reference: 'PAY-1' };
    const first = await t.app.inject({ method: 'POST', url: '/api/v2/admin/subscriptions', headers, payload: grant });
    expect(first.statusCode).toBe(201);
    const again = await t.app.inject({ method: 'POST', url: '/api/v2/admin/subscriptions', headers, payload: grant });
    expect(again.statusCode).toBe(200);
    expect(again.json().data.id).toBe(first.json().data.id);
    const other = await t.newPatient();
    const reused = await t.app.inject({
      method: 'POST',
      url: '/api/v2/admin/subscriptions',
      headers,
      payload: { ...grant, user_id: other.id },
    });
    expect(reused.statusCode).toBe(409);
    const count = await t.ctx.db
      .selectFrom('subscriptions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('payment_reference', '=', 'PAY-1')
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(1);

    const credits = await t.app.inject({ url: '/api/v2/me/credits', headers: await t.auth({ id: userId, role: 'patient' }) });
    expect(credits.json().data.balances).toEqual({ text: 2, voice: 1, video: 0 });
  });

  it('shows flags and phase', async () => {
    const admin = await t.newAdmin();
    const res = await t.app.inject({ url: '/api/v2/admin/flags', headers: await t.auth(admin) });
    expect(res.json().data).toMatchObject({ phase: 1, flags: { ENFORCE_SESSION_GATED_CHAT: false } });
    t.flags.set({ ENFORCE_SESSION_GATED_CHAT: true });
    try {
      const after = await t.app.inject({ url: '/api/v2/admin/flags', headers: await t.auth(admin) });
      expect(after.json().data).toMatchObject({ phase: 2, flags: { ENFORCE_SESSION_GATED_CHAT: true } });
      expect((await t.app.inject('/metrics')).body).toContain('rollout_phase 2');
    } finally {
      t.flags.set({ ENFORCE_SESSION_GATED_CHAT: false });
    }
  });
});

describe('appointments', () => {
  it('books, confirms, looks up, lists and cancels', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    // Booking needs a usable credit of the booked modality.
    await t.giveCredits(patient, { video: 1 });
    const booked = await t.app.inject({
      method: 'POST',
      url: '/api/v2/appointments',
      headers: await t.auth(patient),
      payload: { doctor_id: doctor.id, scheduled_at: future(120), appointment_type: 'video', reason: 'Cough' },
    });
    expect(booked.statusCode).toBe(201);
    const appt = booked.json().data;
    expect(appt).toMatchObject({ status: 'pending', session_id: null, patient_id: patient.id });

    const confirm = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/confirm`, headers: await t.auth(doctor) });
    expect(confirm.json().data.status).toBe('confirmed');
    // Confirming twice is idempotent.
    expect(
      (await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/confirm`, headers: await t.auth(doctor) })).statusCode,
    ).toBe(200);

    const session = await t.app.inject({ url: `/api/v2/appointments/${appt.id}/session`, headers: await t.auth(patient) });
    expect(session.json().data).toMatchObject({
      appointment_id: appt.id,
      session_id: null,
      session_context: null,
      appointment_status: 'confirmed',
      status: 'confirmed',
      appointment_type: 'video',
    });

    const list = await t.app.inject({ url: '/api/v2/appointments', headers: await t.auth(doctor) });
    expect(list.json().data.map((a: { id: number }) => a.id)).toContain(appt.id);
    const otherList = await t.app.inject({ url: '/api/v2/appointments', headers: await t.auth(await t.newPatient()) });
    expect(otherList.json().data).toEqual([]);

    const cancel = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/cancel`, headers: await t.auth(patient) });
    expect(cancel.json().data.status).toBe('cancelled');
  });

  it('answers the session poll only to a live user who may read the appointment', async () => {
    const { id, patient, doctor } = await t.newAppointment({});
    const url = `/api/v2/appointments/${id}/session`;
    const poll = async (user: { id: number; role: 'patient' | 'doctor' | 'admin' }, target = url) =>
      t.app.inject({ url: target, headers: await t.auth(user) });

    expect((await poll(doctor)).json().data).toMatchObject({ appointment_id: id, session_id: null });
    expect((await poll(await t.newPatient())).json()).toMatchObject({ error_code: 'FORBIDDEN' });
    expect((await poll(patient, '/api/v2/appointments/987654321/session')).json()).toMatchObject({ error_code: 'NOT_FOUND' });
    // A valid token whose user no longer exists (or never did): 401, whether or not the appointment exists.
    const ghost = { id: 987_654_321, role: 'admin' as const };
    expect((await poll(ghost)).statusCode).toBe(401);
    expect((await poll(ghost, '/api/v2/appointments/987654321/session')).statusCode).toBe(401);
    expect((await t.app.inject({ url })).statusCode).toBe(401);
  });

  it('refuses double booking, past times, missing offsets, non-doctors and strangers', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    const headers = await t.auth(patient);
    await t.giveCredits(patient, { text: 1 });
    const at = future(240);
    const payload = { doctor_id: doctor.id, scheduled_at: at, appointment_type: 'text' };
    expect((await t.app.inject({ method: 'POST', url: '/api/v2/appointments', headers, payload })).statusCode).toBe(201);
    const second = await t.newPatient();
    await t.giveCredits(second, { text: 1 });
    const dup = await t.app.inject({ method: 'POST', url: '/api/v2/appointments', headers: await t.auth(second), payload });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().error_code).toBe('CONFLICT');

    const cases: [Record<string, unknown>, number][] = [
      [{ ...payload, scheduled_at: future(-5) }, 400],
      [{ ...payload, scheduled_at: '2030-01-01T10:00:00' }, 400],
      [{ ...payload, doctor_id: patient.id }, 404],
      [{ ...payload, doctor_id: 999999 }, 404],
      [{ ...payload, doctor_id: '5' }, 400],
      [{ ...payload, appointment_type: 'telepathy' }, 400],
    ];
    for (const [body, status] of cases) {
      const res = await t.app.inject({ method: 'POST', url: '/api/v2/appointments', headers, payload: body });
      expect(res.statusCode, JSON.stringify(body)).toBe(status);
      expect(res.json().error_code).toBeTruthy();
    }

    const appt = await t.newAppointment({ status: 'pending', scheduled_at: new Date(Date.now() + 3_600_000) });
    const stranger = await t.newDoctor();
    const res = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/confirm`, headers: await t.auth(stranger) });
    expect(res.statusCode).toBe(403);
    const peek = await t.app.inject({ url: `/api/v2/appointments/${appt.id}`, headers: await t.auth(await t.newPatient()) });
    expect(peek.statusCode).toBe(403);
    const missing = await t.app.inject({ url: '/api/v2/appointments/987654321', headers: await t.auth(appt.patient) });
    expect(missing.statusCode).toBe(404);
  });

  it('rejects malformed JSON, wrong content types, oversized bodies and bad ids with 4xx', async () => {
    const patient = await t.newPatient();
    const headers = { ...(await t.auth(patient)), 'content-type': 'application/json' };
    const before = await t.ctx.db
      .selectFrom('appointments')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    const results = await Promise.all([
      t.app.inject({ method: 'POST', url: '/api/v2/appointments', headers, payload: '{"doctor_id": ' }),
      t.app.inject({ method: 'POST', url: '/api/v2/appointments', headers: { ...headers, 'content-type': 'text/plain' }, payload: 'hi' }),
      t.app.inject({ method: 'POST', url: '/api/v2/appointments', headers, payload: JSON.stringify({ reason: 'x'.repeat(100_000) }) }),
      t.app.inject({ url: '/api/v2/appointments/abc', headers }),
      t.app.inject({ url: '/api/v2/appointments/0', headers }),
      t.app.inject({ url: '/api/v2/appointments/99999999999999999999', headers }),
      t.app.inject({ url: '/api/v2/appointments?limit=1000', headers }),
    ]);
    for (const r of results) {
      expect(r.statusCode, r.body).toBeGreaterThanOrEqual(400);
      expect(r.statusCode, r.body).toBeLessThan(500);
      expect(r.json().error_code).toBeTruthy();
    }
    const after = await t.ctx.db
      .selectFrom('appointments')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });

  it('admin import accepts any status and time', async () => {
    const admin = await t.newAdmin();
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v2/admin/appointments',
      headers: await t.auth(admin),
      payload: { patient_id: patient.id, doctor_id: doctor.id, scheduled_at: future(-30), appointment_type: 'voice', status: 'confirmed' },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json().data).toMatchObject({ status: 'confirmed', appointment_type: 'voice' });
  });
});
