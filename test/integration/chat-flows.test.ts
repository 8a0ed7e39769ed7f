/**
 * End-to-end chat flows:
 * 1. appointment created → session auto-started by the worker's job → the app polls
 *    `/api/v2/appointments/{id}/session` → chat works through the session context (and the legacy
 *    route points there);
 * 2. appointment whose session is not ready → chat is blocked with a clear error that says where
 *    to poll → the session starts → chat works.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { autoStartJob } from '../../src/modules/jobs/auto-start.js';
import { runJobOnce } from '../../src/modules/jobs/scheduler.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
let admin: User;
beforeAll(async () => {
  t = await createHarness();
  admin = await t.newAdmin();
});
afterAll(async () => t?.close());

const as = async (u: User) => t.auth(u);

describe('appointment → auto-started session → chat through the session context', () => {
  it('works end to end, and the legacy route is guided to the session', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await t.giveCredits(patient, { text: 3 });
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/v2/admin/appointments',
      headers: await as(admin),
      payload: {
        patient_id: patient.id,
        doctor_id: doctor.id,
        appointment_type: 'text',
        status: 'confirmed',
        scheduled_at: new Date(Date.now() - 30_000).toISOString(),
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    const appointmentId = created.json().data.id as number;

    // Before the worker runs: not ready, and the error says where to poll.
    const early = await t.app.inject({
      method: 'POST',
      url: `/api/v2/chat/${appointmentId}/messages`,
      headers: await as(patient),
      payload: { message: 'hello?' },
    });
    expect(early.statusCode).toBe(403);
    expect(early.json()).toMatchObject({
      error_code: 'SESSION_NOT_READY',
      appointment_id: appointmentId,
      poll_url: `/api/v2/appointments/${appointmentId}/session`,
    });

    const run = await runJobOnce(t.ctx, autoStartJob);
    expect(run.status).toBe('succeeded');

    const poll = await t.app.inject({ url: early.json().poll_url, headers: await as(patient) });
    const linked = poll.json().data;
    expect(linked).toMatchObject({ appointment_id: appointmentId, session_status: 'waiting_for_doctor', status: 'in_progress' });
    const context = linked.session_context as string;
    expect(context).toBe(`text_session:${linked.session_id}`);

    const p1 = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${context}/messages`,
      headers: await as(patient),
      payload: { client_message_id: 'p1', type: 'text', body: 'Hello doctor' },
    });
    expect(p1.statusCode).toBe(201);
    const deadline = (await t.app.inject({ url: `/api/v2/appointments/${appointmentId}/session`, headers: await as(patient) })).json().data
      .doctor_response_deadline;
    expect(deadline).not.toBeNull();
    const d1 = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${context}/messages`,
      headers: await as(doctor),
      payload: { client_message_id: 'd1', type: 'text', body: 'Hello, how can I help?' },
    });
    expect(d1.statusCode).toBe(201);
    const session = (await t.app.inject({ url: `/api/v2/sessions/${context}`, headers: await as(doctor) })).json().data;
    expect(session.status).toBe('active');

    // Phase 1: the old app's appointment-addressed call still works, served by the session.
    const legacy = await t.app.inject({ url: `/api/v2/chat/${appointmentId}/messages`, headers: await as(patient) });
    expect(legacy.statusCode).toBe(200);
    expect(legacy.json().data.map((m: { message: string }) => m.message)).toEqual(['Hello doctor', 'Hello, how can I help?']);

    // Phase 2+: blocked, pointing at the session context the app must use.
    t.flags.set({ ENFORCE_SESSION_GATED_CHAT: true });
    try {
      const blocked = await t.app.inject({ url: `/api/v2/chat/${appointmentId}/messages`, headers: await as(patient) });
      expect(blocked.statusCode).toBe(400);
      expect(blocked.json()).toMatchObject({
        error_code: 'SESSION_CONTEXT_REQUIRED',
        session_id: linked.session_id,
        session_context: context,
        session_chat_url: `/api/v2/sessions/${context}/messages`,
      });
      const viaContext = await t.app.inject({ url: blocked.json().session_chat_url, headers: await as(patient) });
      expect(viaContext.json().data.messages).toHaveLength(2);
    } finally {
      t.flags.set({ ENFORCE_SESSION_GATED_CHAT: false });
    }
  });

  it('a call appointment gets a call session context (never "not ready" once the session exists)', async () => {
    const a = await t.newAppointment({ appointment_type: 'audio' });
    await t.giveCredits(a.patient, { voice: 1 });
    await runJobOnce(t.ctx, autoStartJob);
    const linked = (await t.app.inject({ url: `/api/v2/appointments/${a.id}/session`, headers: await as(a.patient) })).json().data;
    expect(linked.session_context).toBe(`call_session:${linked.session_id}`);
    t.flags.set({ ENFORCE_SESSION_GATED_CHAT: true });
    try {
      const blocked = await t.app.inject({ url: `/api/v2/chat/${a.id}/messages`, headers: await as(a.doctor) });
      expect(blocked.json()).toMatchObject({ error_code: 'SESSION_CONTEXT_REQUIRED', session_context: linked.session_context });
    } finally {
      t.flags.set({ ENFORCE_SESSION_GATED_CHAT: false });
    }
    const msg = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${linked.session_context}/messages`,
      headers: await as(a.doctor),
      payload: { client_message_id: 'c1', type: 'text', body: 'Calling you in a minute' },
    });
    expect(msg.statusCode).toBe(201);
  });
});

describe('session not ready → blocked with where to poll → started → chat', () => {
  it('guides the client from SESSION_NOT_READY to the session context', async () => {
    const a = await t.newAppointment({ scheduled_at: new Date(Date.now() + 10 * 60_000) });
    await t.giveCredits(a.patient, { text: 1 });
    const headers = await as(a.patient);
    for (const op of [
      { method: 'GET' as const, url: `/api/v2/chat/${a.id}/messages` },
      { method: 'POST' as const, url: `/api/v2/chat/${a.id}/messages`, payload: { message: 'Are you there?' } },
      { method: 'POST' as const, url: `/api/v2/chat/${a.id}/typing/start` },
    ]) {
      const res = await t.app.inject({ ...op, headers });
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({
        success: false,
        error_code: 'SESSION_NOT_READY',
        appointment_id: a.id,
        poll_url: `/api/v2/appointments/${a.id}/session`,
      });
      expect(res.json().message).toMatch(/Poll GET \/api\/v2\/appointments\/\d+\/session/);
    }
    const before = (await t.app.inject({ url: `/api/v2/appointments/${a.id}/session`, headers })).json().data;
    expect(before).toMatchObject({ session_id: null, session_context: null, status: 'confirmed' });

    // The patient starts it (allowed from 15 minutes before the time).
    const started = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${a.id}/start-session`, headers });
    expect(started.statusCode).toBe(201);
    const after = (await t.app.inject({ url: `/api/v2/appointments/${a.id}/session`, headers })).json().data;
    expect(after.session_context).toMatch(/^text_session:\d+$/);
    const sentRes = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${after.session_context}/messages`,
      headers,
      payload: { client_message_id: 'n1', type: 'text', body: 'Are you there?' },
    });
    expect(sentRes.statusCode).toBe(201);
    // Without enforcement the legacy route now works too (served by the session).
    const legacy = await t.app.inject({ url: `/api/v2/chat/${a.id}/messages`, headers });
    expect(legacy.json().data).toHaveLength(1);
  });
});
