/**
 * Contract tests of the original app's chat over REST (`/api/chat/…`) and of its chat-id
 * rule: the app's requests with their quirks (`text_session_N`, `text_session:N`, bare session
 * numbers, `NaN`, image messages with an `id`, replies with a `reply_to` object, `temp_id`
 * retries), every field the app reads with its type, and the SessionContextGuard's decision
 * table through this door in each phase.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { startSession } from '../integration/chat-helpers.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

const PHASE1 = { ENFORCE_SESSION_GATED_CHAT: false, ENFORCE_SESSION_GATED_BILLING: false, ALLOW_LEGACY_APPOINTMENT_CHAT: true };
const PHASE2 = { ENFORCE_SESSION_GATED_CHAT: true, ENFORCE_SESSION_GATED_BILLING: true, ALLOW_LEGACY_APPOINTMENT_CHAT: true };
const PHASE3 = { ...PHASE2, DISABLE_LEGACY_APPOINTMENT_TRIGGERS: true, ALLOW_LEGACY_APPOINTMENT_CHAT: false };
beforeEach(() => {
  t.flags.set({ ...PHASE1, DISABLE_LEGACY_APPOINTMENT_TRIGGERS: false });
});

async function call(user: User, method: 'GET' | 'POST', url: string, payload?: unknown) {
  const headers: Record<string, string> = { ...(await t.auth(user)), accept: 'application/json' };
  if (method === 'POST') headers['content-type'] = 'application/json';
  return t.app.inject({
    method,
    url,
    headers,
    payload: payload === undefined ? (method === 'POST' ? '' : undefined) : JSON.stringify(payload),
  });
}

let seq = 0;
const tempId = () => `msg_${Date.now()}_${++seq}`;

function expectFailure(res: { statusCode: number; json(): unknown; headers: Record<string, unknown> }, status: number) {
  expect(res.statusCode).toBe(status);
  expect(String(res.headers['content-type'])).toMatch(/json/);
  const body = res.json() as Record<string, unknown>;
  expect(body['success']).toBe(false);
  expect(typeof body['message']).toBe('string');
  return body as { message: string; error_code: string } & Record<string, unknown>;
}

/** Every field of the app's message object with its type. */
function expectMessage(m: Record<string, unknown>) {
  expect(Number.isInteger(m['id'])).toBe(true);
  expect(Number.isInteger(m['appointment_id'])).toBe(true);
  expect(Number.isInteger(m['sender_id'])).toBe(true);
  expect(typeof m['sender_name']).toBe('string');
  expect(typeof m['message']).toBe('string');
  expect(['text', 'image', 'voice']).toContain(m['message_type']);
  expect(m['media_url'] === null || typeof m['media_url'] === 'string').toBe(true);
  expect(m['temp_id'] === null || typeof m['temp_id'] === 'string').toBe(true);
  for (const k of ['created_at', 'timestamp']) expect(Number.isNaN(Date.parse(m[k] as string))).toBe(false);
  expect(['sending', 'sent', 'delivered', 'read', 'failed']).toContain(m['delivery_status']);
  expect(Array.isArray(m['read_by'])).toBe(true);
}

/** An instant text session (no appointment), as "Talk Now" creates it. */
async function instantTextSession() {
  const patient = await t.newPatient({ name: 'Thoko Patient' });
  const doctor = await t.newDoctor({ name: 'Kondwani Doctor' });
  await t.giveCredits(patient, { text: 3 });
  const res = await call(patient, 'POST', '/api/text-sessions/start', { doctor_id: doctor.id });
  expect(res.statusCode, res.body).toBe(201);
  return { patient, doctor, id: res.json().data.session_id as number };
}

const guardLog = (appointmentId: number) =>
  t.ctx.db
    .selectFrom('guard_event_log')
    .select(['operation', 'outcome', 'enforced'])
    .where('appointment_id', '=', appointmentId)
    .where('guard', '=', 'chat')
    .execute();

describe('POST /api/chat/{id}/messages and GET …/messages on a text session', () => {
  it('text, image (with an `id` field), voice and replies are stored and come back in the shape the app reads', async () => {
    const s = await instantTextSession();
    const room = `text_session_${s.id}`;
    const text = await call(s.patient, 'POST', `/api/chat/${room}/messages`, {
      message: 'Hello doctor',
      message_type: 'text',
      temp_id: tempId(),
    });
    expect(text.statusCode, text.body).toBe(200);
    expect(text.json().success).toBe(true);
    expectMessage(text.json().data);
    expect(text.json().data.appointment_id).toBe(s.id);

    const image = await call(s.patient, 'POST', `/api/chat/${room}/messages`, {
      id: `msg_${Date.now()}_img`,
      message: '🖼️ Image',
      message_type: 'image',
      media_url: 'https://media.example.org/a.jpg',
      temp_id: tempId(),
    });
    expect(image.statusCode, image.body).toBe(200);
    expect(image.json().data).toMatchObject({ message_type: 'image', media_url: 'https://media.example.org/a.jpg' });

    const voice = await call(s.doctor, 'POST', `/api/chat/text_session:${s.id}/messages`, {
      message: '🎤 Voice message',
      message_type: 'voice',
      media_url: 'https://media.example.org/v.m4a',
      temp_id: tempId(),
    });
    expect(voice.statusCode, voice.body).toBe(200);

    // A reply naming a message of this session keeps the link; one naming a temporary id or
    // another session's message is stored as a plain message (never lost, never cross-linked).
    const textId = text.json().data.id as number;
    const reply = await call(s.doctor, 'POST', `/api/chat/${room}/messages`, {
      message: 'Replying',
      message_type: 'text',
      temp_id: tempId(),
      reply_to: { messageId: String(textId), message: 'Hello doctor', senderName: 'Thoko Patient' },
    });
    expect(reply.statusCode, reply.body).toBe(200);
    expect(reply.json().data.reply_to_id).toBe(textId);
    const other = await instantTextSession();
    const foreign = (
      await call(other.patient, 'POST', `/api/chat/text_session_${other.id}/messages`, { message: 'elsewhere', temp_id: tempId() })
    ).json().data.id as number;
    for (const messageId of [`msg_${Date.now()}_local`, foreign]) {
      const r = await call(s.doctor, 'POST', `/api/chat/${room}/messages`, {
        message: 'Plain reply',
        temp_id: tempId(),
        reply_to: { messageId },
      });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json().data.reply_to_id).toBeNull();
    }

    // History through all three id forms, the bare one included (the app's media fallbacks).
    for (const form of [room, `text_session:${s.id}`, String(s.id)]) {
      const res = await call(s.patient, 'GET', `/api/chat/${form}/messages`);
      expect(res.statusCode, `${form}: ${res.body}`).toBe(200);
      expect(String(res.headers['content-type'])).toMatch(/application\/json/);
      const data = res.json().data as Record<string, unknown>[];
      expect(data.map((m) => m['message'])).toEqual([
        'Hello doctor',
        '🖼️ Image',
        '🎤 Voice message',
        'Replying',
        'Plain reply',
        'Plain reply',
      ]);
      data.forEach(expectMessage);
    }
  });

  it('temp_id makes a retry return the stored message; delivery_status and read_by follow the read horizons', async () => {
    const s = await instantTextSession();
    const body = { message: 'Are you there?', message_type: 'text', temp_id: tempId() };
    const first = (await call(s.patient, 'POST', `/api/chat/text_session_${s.id}/messages`, body)).json().data;
    const retry = (await call(s.patient, 'POST', `/api/chat/text_session_${s.id}/messages`, body)).json().data;
    expect(retry.id).toBe(first.id);
    expect(retry.temp_id).toBe(body.temp_id);
    let mine = (await call(s.patient, 'GET', `/api/chat/text_session_${s.id}/messages`)).json().data;
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ delivery_status: 'sent', read_by: [] });
    expect((await call(s.doctor, 'GET', `/api/chat/text_session_${s.id}/messages`)).json().data[0].delivery_status).toBe('delivered');

    const mark = await call(s.doctor, 'POST', `/api/chat/text_session_${s.id}/mark-read`, {
      user_id: s.doctor.id,
      timestamp: new Date().toISOString(),
    });
    expect(mark.statusCode, mark.body).toBe(200);
    expect(mark.json()).toMatchObject({ success: true, message: 'Messages marked as read' });
    mine = (await call(s.patient, 'GET', `/api/chat/text_session_${s.id}/messages`)).json().data;
    expect(mine[0].delivery_status).toBe('read');
    expect(mine[0].read_by).toHaveLength(1);
    expect(mine[0].read_by[0]).toMatchObject({ user_id: s.doctor.id, user_name: 'Kondwani Doctor' });
    expect(typeof mine[0].read_by[0].read_at).toBe('string');

    const local = await call(s.patient, 'GET', `/api/chat/text_session_${s.id}/local-storage`);
    expect(local.statusCode).toBe(200);
    expect(local.json().data).toMatchObject({ appointment_id: s.id, message_count: 1 });
    expect(typeof local.json().data.last_sync).toBe('string');
    expectMessage(local.json().data.messages[0]);
  });

  it('refusals are problem documents with a readable message: stranger, links, ended session, bad ids', async () => {
    const s = await instantTextSession();
    const url = `/api/chat/text_session_${s.id}/messages`;
    expectFailure(await call(await t.newPatient(), 'POST', url, { message: 'hi', temp_id: tempId() }), 403);
    expectFailure(await call(await t.newPatient(), 'GET', url), 403);
    const blocked = expectFailure(await call(s.patient, 'POST', url, { message: 'see https://evil.example', temp_id: tempId() }), 400);
    expect(blocked.error_code).toBe('CONTENT_BLOCKED');
    expectFailure(await call(s.patient, 'POST', url, { message_type: 'text' }), 400);
    await call(s.patient, 'POST', `/api/text-sessions/${s.id}/end`);
    const ended = expectFailure(await call(s.patient, 'POST', url, { message: 'late', temp_id: tempId() }), 403);
    expect(ended.message).toMatch(/ended/);
    for (const bad of ['NaN', 'undefined', 'text_session_abc'])
      expectFailure(await call(s.patient, 'GET', `/api/chat/${bad}/messages`), 404);
  });

  it("a bare number is the caller's appointment when they have one with that id, else their text session", async () => {
    const s = await instantTextSession();
    // A stranger's appointment with the same number as the session does not shadow it.
    const strangers = [await t.newPatient(), await t.newDoctor()];
    await sql`insert into appointments (id, patient_id, doctor_id, appointment_type, scheduled_at, status)
              overriding system value values (${s.id}, ${strangers[0]!.id}, ${strangers[1]!.id}, 'text', now(), 'confirmed')
              on conflict do nothing`.execute(t.ctx.db);
    await sql`select setval(pg_get_serial_sequence('appointments', 'id'), (select max(id) from appointments))`.execute(t.ctx.db);
    const sent = await call(s.patient, 'POST', `/api/chat/${s.id}/messages`, { message: 'via bare id', temp_id: tempId() });
    expect(sent.statusCode, sent.body).toBe(200);
    expect(sent.json().data.session_id).toBe(s.id);
    const owner = await call(strangers[0]!, 'GET', `/api/chat/${s.id}/info`);
    expect(owner.statusCode, owner.body).toBe(200);
    expect(owner.json().data.appointment_id).toBe(s.id);
    expect(owner.json().data.patient_id).toBe(strangers[0]!.id);
  });
});

describe('appointment ids through the SessionContextGuard', () => {
  it('phase 1: an appointment with a session is served by the session (would-block); one without is pre-session chat', async () => {
    const s = await startSession(t);
    const res = await call(s.patient, 'POST', `/api/chat/${s.appointmentId}/messages`, { message: 'by appointment', temp_id: tempId() });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toMatchObject({ session_id: s.sessionId, appointment_id: s.appointmentId });
    const list = await call(s.doctor, 'GET', `/api/chat/${s.appointmentId}/messages`);
    expect(list.statusCode).toBe(200);
    expect(list.json().data.map((m: { message: string }) => m.message)).toEqual(['by appointment']);
    expect((await guardLog(s.appointmentId)).map((e) => `${e.operation}:${e.outcome}`).sort()).toEqual([
      'getMessages:would_block',
      'sendMessage:would_block',
    ]);

    const a = await t.newAppointment({ scheduled_at: new Date(Date.now() + 3_600_000) });
    const pre = await call(a.patient, 'POST', `/api/chat/${a.id}/messages`, { message: 'before the session', temp_id: tempId() });
    expect(pre.statusCode, pre.body).toBe(200);
    expect(pre.json().data.session_id).toBeNull();
    expect((await guardLog(a.id)).map((e) => e.outcome)).toEqual(['allowed_legacy']);
  });

  it('phase 2: SESSION_CONTEXT_REQUIRED with a message a person understands, the session still works', async () => {
    const s = await startSession(t);
    t.flags.set(PHASE2);
    for (const [method, url, body] of [
      ['POST', `/api/chat/${s.appointmentId}/messages`, { message: 'x', temp_id: tempId() }],
      ['GET', `/api/chat/${s.appointmentId}/messages`, undefined],
      ['POST', `/api/chat/${s.appointmentId}/mark-read`, {}],
      ['GET', `/api/chat/${s.appointmentId}/local-storage`, undefined],
    ] as const) {
      const b = expectFailure(await call(s.patient, method, url, body), 400);
      expect(b.error_code).toBe('SESSION_CONTEXT_REQUIRED');
      expect(b.message).toMatch(/Messages/);
      expect(b.message).not.toMatch(/endpoint/);
      expect(b['session_context']).toBe(s.context);
    }
    expect((await guardLog(s.appointmentId)).every((e) => e.outcome === 'blocked' && e.enforced)).toBe(true);
    const ok = await call(s.patient, 'POST', `/api/chat/text_session_${s.sessionId}/messages`, {
      message: 'through the session',
      temp_id: tempId(),
    });
    expect(ok.statusCode, ok.body).toBe(200);
    const rows = await t.ctx.db.selectFrom('messages').select('body').where('session_id', '=', s.sessionId).execute();
    expect(rows.map((r) => r.body)).toEqual(['through the session']);
  });

  it('phase 3: an appointment without a session is SESSION_NOT_READY with a readable message; direct_session_* is refused in every phase', async () => {
    const a = await t.newAppointment({ scheduled_at: new Date(Date.now() + 3_600_000) });
    t.flags.set(PHASE3);
    const b = expectFailure(await call(a.patient, 'POST', `/api/chat/${a.id}/messages`, { message: 'x', temp_id: tempId() }), 403);
    expect(b.error_code).toBe('SESSION_NOT_READY');
    expect(b.message).toMatch(/not started yet/);
    expect(await t.ctx.db.selectFrom('messages').select('id').where('appointment_id', '=', a.id).execute()).toHaveLength(0);
    for (const flags of [PHASE1, PHASE3]) {
      t.flags.set(flags);
      const d = expectFailure(await call(a.patient, 'GET', `/api/chat/direct_session_${Date.now()}/messages`), 400);
      expect(d.error_code).toBe('SESSION_CONTEXT_REQUIRED');
    }
  });
});

describe('GET /api/chat/{id}/info', () => {
  it('an appointment: the header fields with an integer status and the session once it exists', async () => {
    const patient = await t.newPatient({ name: 'Mercy Tembo', timezone: 'Africa/Blantyre' });
    const doctor = await t.newDoctor({ name: 'Peter Zulu' });
    const a = await t.newAppointment({ patient, doctor, appointment_type: 'video', scheduled_at: new Date('2026-12-01T12:30:00Z') });
    const res = await call(patient, 'GET', `/api/chat/${a.id}/info`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toMatchObject({
      appointment_id: a.id,
      other_participant_name: 'Dr. Peter Zulu',
      appointment_type: 'video',
      status: 1,
      doctor_id: doctor.id,
      patient_id: patient.id,
      session_id: null,
      session_context: null,
      appointment_date: '2026-12-01',
      appointment_time: '14:30:00',
    });
    expect(typeof res.json().data.call_unlocked_at).toBe('string');
    expect((await call(doctor, 'GET', `/api/chat/${a.id}/info`)).json().data.other_participant_name).toBe('Mercy Tembo');

    const s = await startSession(t);
    const withSession = (await call(s.patient, 'GET', `/api/chat/${s.appointmentId}/info`)).json().data;
    expect(withSession).toMatchObject({ appointment_type: 'text', status: 7, session_id: s.sessionId, session_context: s.context });
  });

  it('a text session id answers type text; NaN and strangers get clear problem documents', async () => {
    const s = await instantTextSession();
    const info = await call(s.patient, 'GET', `/api/chat/text_session_${s.id}/info`);
    expect(info.statusCode).toBe(200);
    expect(info.json().data).toMatchObject({
      appointment_type: 'text',
      session_id: s.id,
      doctor_id: s.doctor.id,
      status: 'waiting_for_doctor',
    });
    const nan = expectFailure(await call(s.patient, 'GET', '/api/chat/NaN/info'), 404);
    // The old backend never routed it: a plain sentence, not a stack of codes.
    expect(nan.message).toMatch(/not (found|available)/i);
    expectFailure(await call(await t.newPatient(), 'GET', `/api/chat/text_session_${s.id}/info`), 403);
  });
});
