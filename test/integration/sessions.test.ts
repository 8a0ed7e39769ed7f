import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

describe('start-session and the single writer', () => {
  it('creates one session, links the appointment, enqueues notifications once, and is idempotent', async () => {
    const appt = await t.newAppointment({ appointment_type: 'video' });
    await t.giveCredits(appt.patient, { video: 2 });
    const headers = await t.auth(appt.patient);
    const first = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/start-session`, headers });
    expect(first.statusCode, first.body).toBe(201);
    const s = first.json().data;
    expect(s).toMatchObject({
      kind: 'call',
      modality: 'video',
      source: 'APPOINTMENT',
      status: 'waiting',
      appointment_id: appt.id,
      credits_at_start: 2,
    });
    expect(s.session_context).toBe(`call_session:${s.id}`);

    const again = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${appt.id}/start-session`,
      headers: await t.auth(appt.doctor),
    });
    expect(again.statusCode).toBe(200);
    expect(again.json().data.id).toBe(s.id);

    const look = await t.app.inject({ url: `/api/v2/appointments/${appt.id}/session`, headers });
    expect(look.json().data).toMatchObject({
      session_id: s.id,
      session_context: s.session_context,
      session_status: 'waiting',
      status: 'in_progress',
    });

    // One outbox row (unique key per appointment and session) for both participants.
    const outbox = await t.ctx.db
      .selectFrom('notification_outbox')
      .selectAll()
      .where('dedupe_key', 'like', `session_started:${appt.id}:%`)
      .execute();
    expect(outbox.map((o) => [o.dedupe_key, o.recipient_id, o.also_notify])).toEqual([
      [`session_started:${appt.id}:${s.id}`, appt.patient.id, [appt.doctor.id]],
    ]);
    const conversions = await t.ctx.db.selectFrom('appointment_conversions').selectAll().where('appointment_id', '=', appt.id).execute();
    expect(conversions.map((c) => c.result)).toEqual(['created']);

    // Delivered exactly once (after commit, asynchronously).
    await expect.poll(async () => (await t.app.inject({ url: '/api/v2/me/notifications', headers })).json().data.length).toBe(1);
  });

  it('refuses strangers, too-early starts and unconfirmed appointments', async () => {
    const early = await t.newAppointment({ scheduled_at: new Date(Date.now() + 3_600_000) });
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${early.id}/start-session`,
      headers: await t.auth(early.patient),
    });
    expect(res.statusCode).toBe(409);
    const stranger = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${early.id}/start-session`,
      headers: await t.auth(await t.newPatient()),
    });
    expect(stranger.statusCode).toBe(403);
    const pending = await t.newAppointment({ status: 'pending' });
    const p = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${pending.id}/start-session`,
      headers: await t.auth(pending.doctor),
    });
    expect(p.statusCode).toBe(409);
  });

  it('parses contexts strictly', async () => {
    const appt = await t.newAppointment({ appointment_type: 'text' });
    await t.giveCredits(appt.patient, { text: 1 });
    const started = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${appt.id}/start-session`,
      headers: await t.auth(appt.patient),
    });
    const id = started.json().data.id as number;
    const headers = await t.auth(appt.patient);
    const get = (ctx: string) => t.app.inject({ url: `/api/v2/sessions/${encodeURIComponent(ctx)}`, headers });
    expect((await get(`text_session:${id}`)).statusCode).toBe(200);
    expect((await get(`text_session_${id}`)).json().data.session_context).toBe(`text_session:${id}`);
    expect((await get(`call_session:${id}`)).statusCode).toBe(404);
    expect((await get(String(id))).statusCode).toBe(400);
    expect((await get(`${id}abc`)).statusCode).toBe(400);
    expect((await get('direct_session_abc')).json().error_code).toBe('SESSION_CONTEXT_REQUIRED');
    expect((await get('text_session:9223372036854775807')).statusCode).toBe(404);
  });
});

describe('ending and calls', () => {
  it('ends idempotently and completes the appointment', async () => {
    const appt = await t.newAppointment({ appointment_type: 'voice' });
    await t.giveCredits(appt.patient, { voice: 2 });
    const start = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${appt.id}/start-session`,
      headers: await t.auth(appt.patient),
    });
    const ctx = start.json().data.session_context as string;
    const call = (who: typeof appt.patient, action: string) =>
      t.auth(who).then((headers) => t.app.inject({ method: 'POST', url: `/api/v2/sessions/${ctx}/call/${action}`, headers }));
    expect((await call(appt.patient, 'join')).json().data.status).toBe('ringing');
    const connected = (await call(appt.doctor, 'join')).json().data;
    expect(connected.status).toBe('connected');
    expect(connected.connected_at).toBeTruthy();

    const ends = await Promise.all(
      [appt.patient, appt.doctor, appt.patient].map(async (u) =>
        t.app.inject({ method: 'POST', url: `/api/v2/sessions/${ctx}/end`, headers: await t.auth(u) }),
      ),
    );
    for (const e of ends) expect(e.json().data.status).toBe('ended');
    const a = await t.ctx.db.selectFrom('appointments').select('status').where('id', '=', appt.id).executeTakeFirstOrThrow();
    expect(a.status).toBe('completed');
  });

  it('an instant session: one live per patient; a busy doctor is 409; decline ends it', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await t.giveCredits(patient, { voice: 1 });
    const headers = await t.auth(patient);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v2/sessions',
      headers,
      payload: { doctor_id: doctor.id, modality: 'voice' },
    });
    expect(res.statusCode, res.body).toBe(201);
    const ctx = res.json().data.session_context;
    const second = await t.app.inject({
      method: 'POST',
      url: '/api/v2/sessions',
      headers,
      payload: { doctor_id: (await t.newDoctor()).id, modality: 'voice' },
    });
    expect(second.statusCode).toBe(409);
    const other = await t.newPatient();
    await t.giveCredits(other, { voice: 1 });
    const busy = await t.app.inject({
      method: 'POST',
      url: '/api/v2/sessions',
      headers: await t.auth(other),
      payload: { doctor_id: doctor.id, modality: 'voice' },
    });
    expect(busy.statusCode).toBe(409);

    await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${ctx}/call/join`, headers });
    const declined = await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${ctx}/call/decline`, headers: await t.auth(doctor) });
    expect(declined.json().data).toMatchObject({ status: 'ended', end_reason: 'declined' });
  });
});
