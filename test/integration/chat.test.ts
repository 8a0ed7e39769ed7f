/**
 * Session chat: send, list, reply, reactions, typing, read — through
 * `/api/v2/sessions/{context}/…`, on a real database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusEvent } from '../../src/realtime/bus.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { metricValue, nextClientId, send, sent, startSession, type StartedSession } from './chat-helpers.js';

let t: TestHarness;
let clock = Date.now();
const events: BusEvent[] = [];

beforeAll(async () => {
  t = await createHarness({ now: () => new Date(clock) });
  t.ctx.bus.subscribe((e) => events.push(e));
});
afterAll(async () => t?.close());

const sessionRow = (id: number) => t.ctx.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
const list = async (user: StartedSession['patient'], context: string, query = '') =>
  t.app.inject({ url: `/api/v2/sessions/${context}/messages${query}`, headers: await t.auth(user) });

describe('send and the session state machine', () => {
  it("patient's first message starts the response window; the doctor's activates; order and names are kept", async () => {
    const s = await startSession(t);
    const first = await send(t, s.patient, s.context, { body: 'Hello doctor,\nI have a headache.\n\n– since Monday' });
    expect(first.statusCode, first.body).toBe(201);
    const m1 = first.json().data;
    expect(m1).toMatchObject({
      session_id: s.sessionId,
      session_context: s.context,
      appointment_id: s.appointmentId,
      sender_id: s.patient.id,
      sender_name: s.patient.name,
      sender_role: 'patient',
      type: 'text',
      body: 'Hello doctor,\nI have a headache.\n\n– since Monday',
      media_url: null,
      reply_to_message_id: null,
      reactions: [],
    });
    let row = await sessionRow(s.sessionId);
    expect(row.status).toBe('waiting_for_doctor');
    expect(row.patient_first_message_at).not.toBeNull();
    expect(row.doctor_response_deadline!.getTime() - row.patient_first_message_at!.getTime()).toBe(300_000);

    // A second patient message does not move the deadline.
    const deadline = row.doctor_response_deadline!.getTime();
    await sent(t, s.patient, s.context, { body: 'still there?' });
    expect((await sessionRow(s.sessionId)).doctor_response_deadline!.getTime()).toBe(deadline);

    const reply = await send(t, s.doctor, s.context, { body: 'Hello, I am here.' });
    expect(reply.statusCode).toBe(201);
    expect(reply.json().data.sender_role).toBe('doctor');
    row = await sessionRow(s.sessionId);
    expect(row.status).toBe('active');
    expect(row.activated_at).not.toBeNull();
    expect(row.doctor_response_deadline).toBeNull();
    expect(
      events.some(
        (e) => e.type === 'session.status' && e.sessionId === s.sessionId && (e.payload as { status: string }).status === 'active',
      ),
    ).toBe(true);

    const page = (await list(s.patient, s.context)).json().data;
    expect(page.messages.map((m: { body: string }) => m.body)).toEqual([
      'Hello doctor,\nI have a headache.\n\n– since Monday',
      'still there?',
      'Hello, I am here.',
    ]);
    expect(page.unread_count).toBe(1);
    expect(page.last_read_message_id).toBeNull();
  });

  it('refuses messages into ended and expired sessions with 403 SESSION_NOT_ACTIVE (a retry still returns the stored message)', async () => {
    const s = await startSession(t);
    const m = await sent(t, s.patient, s.context);
    await sent(t, s.doctor, s.context);
    const end = await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/end`, headers: await t.auth(s.doctor) });
    expect(end.statusCode).toBe(200);
    const after = await send(t, s.patient, s.context);
    expect(after.statusCode).toBe(403);
    expect(after.json()).toMatchObject({ error_code: 'SESSION_NOT_ACTIVE', session_status: 'ended', session_id: s.sessionId });
    expect(after.headers['content-type']).toContain('application/problem+json');
    const retry = await send(t, s.patient, s.context, { client_message_id: m.client_message_id, body: m.body });
    expect(retry.statusCode).toBe(200);
    expect(retry.json().data.id).toBe(m.id);
  });

  it("expires a waiting session whose doctor missed the window, and refuses the doctor's late message", async () => {
    const s = await startSession(t);
    await sent(t, s.patient, s.context);
    clock += 301_000;
    try {
      const late = await send(t, s.doctor, s.context);
      expect(late.statusCode).toBe(403);
      expect(late.json()).toMatchObject({ error_code: 'SESSION_NOT_ACTIVE', session_status: 'expired' });
      const row = await sessionRow(s.sessionId);
      expect(row).toMatchObject({ status: 'expired', end_reason: 'doctor_no_response' });
      expect(row.activated_at).toBeNull();
      // The history stays readable.
      expect((await list(s.doctor, s.context)).json().data.messages).toHaveLength(1);
    } finally {
      clock = Date.now();
    }
  });

  it('activates exactly once under concurrent first messages of both participants', async () => {
    const s = await startSession(t);
    const before = events.length;
    const sends = await Promise.all(
      Array.from({ length: 12 }, (_, i) => send(t, i % 2 === 0 ? s.doctor : s.patient, s.context, { body: `m${i}` })),
    );
    for (const r of sends) expect(r.statusCode, r.body).toBe(201);
    const row = await sessionRow(s.sessionId);
    expect(row.status).toBe('active');
    const activations = events
      .slice(before)
      .filter((e) => e.type === 'session.status' && e.sessionId === s.sessionId && (e.payload as { status: string }).status === 'active');
    expect(activations).toHaveLength(1);
    const page = (await list(s.patient, s.context, '?limit=100')).json().data;
    expect(page.messages).toHaveLength(12);
  });

  it('chat works in call sessions too, before and after the call connects', async () => {
    const s = await startSession(t, { type: 'video' });
    expect(s.context).toMatch(/^call_session:/);
    expect((await send(t, s.patient, s.context)).statusCode).toBe(201);
    const join = async (u: StartedSession['patient']) =>
      t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/call/join`, headers: await t.auth(u) });
    await join(s.patient);
    await join(s.doctor);
    expect((await sessionRow(s.sessionId)).status).toBe('connected');
    expect((await send(t, s.doctor, s.context, { body: 'can you hear me?' })).statusCode).toBe(201);
    const page = (await list(s.patient, s.context)).json().data;
    expect(page.messages).toHaveLength(2);
    // The prefix must match the kind.
    expect((await send(t, s.patient, `text_session:${s.sessionId}`)).statusCode).toBe(404);
  });
});

describe('idempotency by client_message_id', () => {
  it('a retry returns the stored message with 200; legitimate repeats with new ids are kept', async () => {
    const s = await startSession(t);
    const id = nextClientId();
    const a = await send(t, s.patient, s.context, { client_message_id: id, body: 'yes' });
    const b = await send(t, s.patient, s.context, { client_message_id: id, body: 'yes' });
    expect(a.statusCode).toBe(201);
    expect(b.statusCode).toBe(200);
    expect(b.json().data.id).toBe(a.json().data.id);
    // "yes" twice on purpose: two messages.
    const c = await send(t, s.patient, s.context, { body: 'yes' });
    expect(c.statusCode).toBe(201);
    // The same client id from the other participant is a different message.
    const d = await send(t, s.doctor, s.context, { client_message_id: id, body: 'yes' });
    expect(d.statusCode).toBe(201);
    const bodies = (await list(s.patient, s.context)).json().data.messages.map((m: { body: string }) => m.body);
    expect(bodies).toEqual(['yes', 'yes', 'yes']);
  });

  it('concurrent retries of one client id store exactly one message (waiting and active sessions)', async () => {
    for (const activate of [false, true]) {
      const s = await startSession(t);
      if (activate) await sent(t, s.doctor, s.context);
      const id = nextClientId();
      const rs = await Promise.all(Array.from({ length: 8 }, () => send(t, s.patient, s.context, { client_message_id: id, body: 'once' })));
      expect(rs.map((r) => r.statusCode).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 201]);
      expect(new Set(rs.map((r) => r.json().data.id)).size).toBe(1);
      const n = await t.ctx.db
        .selectFrom('messages')
        .select(t.ctx.db.fn.countAll<number>().as('n'))
        .where('session_id', '=', s.sessionId)
        .where('client_message_id', '=', id)
        .executeTakeFirstOrThrow();
      expect(Number(n.n)).toBe(1);
    }
  });
});

describe('content rules', () => {
  let s: StartedSession;
  beforeAll(async () => {
    s = await startSession(t);
    await sent(t, s.doctor, s.context);
  });

  it.each([
    ['<b>bold</b>', 'html'],
    ['<script>alert(1)</script>', 'html'],
    ['hi <img src=x onerror=alert(1)>', 'html'],
    ['<iframe src', 'html'],
    ['<!-- x -->', 'html'],
    ['click javascript:alert(1)', 'script'],
    ['data:text/html;base64,PHNjcmlwdD4=', 'script'],
    ['see https://evil.example/x', 'link'],
    ['ftp://files.example', 'link'],
    ['go to www.example', 'link'],
    ['visit example.com today', 'link'],
    ['bit.ly/abc', 'link'],
    ['mailto:someone', 'link'],
    ['http://10.0.0.1:8080/', 'link'],
  ])('blocks %j (%s) with 400 CONTENT_BLOCKED', async (body, reason) => {
    const r = await send(t, s.patient, s.context, { body });
    expect(r.statusCode).toBe(400);
    expect(r.json().error_code).toBe('CONTENT_BLOCKED');
    expect(r.json().reasons).toContain(reason);
  });

  it.each([
    'ok.bye',
    'one = 1',
    'I <3 you',
    'a < b and c > d, 2<3',
    'take 2.5mg, e.g. twice daily',
    'Dr.Smith said so.Then I left',
    'Blood pressure 120/80, temp 37.5',
    'line one\nline two\r\n\ttabbed',
    '¿Qué tal? 你好 😀',
  ])('allows %j unchanged', async (body) => {
    const r = await send(t, s.patient, s.context, { body });
    expect(r.statusCode, r.body).toBe(201);
    expect(r.json().data.body).toBe(body);
  });

  it('enforces the 1000-character limit in code points, and rejects empty text and control characters', async () => {
    expect((await send(t, s.patient, s.context, { body: 'a'.repeat(1000) })).statusCode).toBe(201);
    expect((await send(t, s.patient, s.context, { body: '😀'.repeat(1000) })).statusCode).toBe(201);
    expect((await send(t, s.patient, s.context, { body: 'a'.repeat(1001) })).json().error_code).toBe('VALIDATION_FAILED');
    expect((await send(t, s.patient, s.context, { body: '   \n ' })).json().error_code).toBe('VALIDATION_FAILED');
    expect((await send(t, s.patient, s.context, { body: 'nul\u0000byte' })).json().error_code).toBe('VALIDATION_FAILED');
  });

  it('image and voice need a media_url (https or same-origin path); text must not have one', async () => {
    const ok = await send(t, s.patient, s.context, { type: 'image', body: '', media_url: 'https://cdn.example.com/chat/1.jpg' });
    expect(ok.statusCode, ok.body).toBe(201);
    expect(ok.json().data).toMatchObject({ type: 'image', media_url: 'https://cdn.example.com/chat/1.jpg' });
    expect((await send(t, s.patient, s.context, { type: 'voice', body: 'voice note', media_url: '/api/audio/v1.m4a' })).statusCode).toBe(
      201,
    );
    expect((await send(t, s.patient, s.context, { type: 'image', body: '' })).statusCode).toBe(400);
    expect((await send(t, s.patient, s.context, { type: 'image', body: '', media_url: 'javascript:alert(1)' })).statusCode).toBe(400);
    expect((await send(t, s.patient, s.context, { type: 'image', body: '', media_url: 'http://plain.example/x.jpg' })).statusCode).toBe(
      400,
    );
    expect((await send(t, s.patient, s.context, { type: 'text', body: 'x', media_url: 'https://cdn.example.com/1.jpg' })).statusCode).toBe(
      400,
    );
    expect((await send(t, s.patient, s.context, { type: 'video', body: 'x' })).statusCode).toBe(400);
  });

  it('rejects unknown fields and wrong types (no coercion)', async () => {
    const headers = await t.auth(s.patient);
    const extra = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers,
      payload: { client_message_id: 'x1', type: 'text', body: 'hi', sender_id: 1 },
    });
    expect(extra.statusCode).toBe(400);
    const wrong = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers,
      payload: { client_message_id: 'x2', type: 'text', body: 'hi', reply_to_message_id: '5' },
    });
    expect(wrong.statusCode).toBe(400);
    const missing = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers,
      payload: { type: 'text', body: 'hi' },
    });
    expect(missing.statusCode).toBe(400);
  });
});

describe('keyset pagination', () => {
  let s: StartedSession;
  let ids: number[];
  beforeAll(async () => {
    s = await startSession(t);
    await sent(t, s.doctor, s.context, { body: 'm0' });
    ids = [];
    for (let i = 1; i <= 24; i++) ids.push((await sent(t, i % 2 ? s.patient : s.doctor, s.context, { body: `m${i}` })).id);
    ids.unshift((await list(s.patient, s.context, '?limit=1&after=1')).json().data.messages[0].id);
  });

  it('newest page, older pages with before, newer pages with after; always oldest first', async () => {
    const newest = (await list(s.patient, s.context, '?limit=10')).json().data;
    expect(newest.messages.map((m: { id: number }) => m.id)).toEqual(ids.slice(-10));
    expect(newest.has_more).toBe(true);
    const older = (await list(s.patient, s.context, `?limit=10&before=${ids[15]}`)).json().data;
    expect(older.messages.map((m: { id: number }) => m.id)).toEqual(ids.slice(5, 15));
    expect(older.has_more).toBe(true);
    const oldest = (await list(s.patient, s.context, `?limit=10&before=${ids[5]}`)).json().data;
    expect(oldest.messages.map((m: { id: number }) => m.id)).toEqual(ids.slice(0, 5));
    expect(oldest.has_more).toBe(false);
    const newer = (await list(s.patient, s.context, `?limit=10&after=${ids[19]}`)).json().data;
    expect(newer.messages.map((m: { id: number }) => m.id)).toEqual(ids.slice(20));
    expect(newer.has_more).toBe(false);
    const window = (await list(s.patient, s.context, `?after=${ids[2]}&before=${ids[6]}`)).json().data;
    expect(window.messages.map((m: { id: number }) => m.id)).toEqual(ids.slice(3, 6));
  });

  it('validates limit and cursors strictly', async () => {
    for (const q of ['?limit=0', '?limit=101', '?limit=abc', '?before=-1', '?after=1.5', '?before=01', '?offset=10']) {
      expect((await list(s.patient, s.context, q)).statusCode, q).toBe(400);
    }
    expect((await list(s.patient, s.context, '?limit=100')).statusCode).toBe(200);
  });

  it('is stable under concurrent inserts: paging forward with after sees every message once', async () => {
    const c = await startSession(t);
    await sent(t, c.doctor, c.context);
    const writers = Promise.all(Array.from({ length: 40 }, (_, i) => sent(t, i % 2 ? c.patient : c.doctor, c.context, { body: `w${i}` })));
    const seen: number[] = [];
    // Ids start at 1 and this test's messages come after other tests' ones.
    let cursor = 1;
    let done = false;
    void writers.then(() => (done = true));
    for (let rounds = 0; rounds < 400; rounds++) {
      const finished = done;
      const page = (await list(c.patient, c.context, `?limit=7&after=${cursor}`)).json().data;
      for (const m of page.messages) seen.push(m.id);
      if (page.messages.length > 0) cursor = page.messages.at(-1).id;
      if (finished && !page.has_more) break;
    }
    await writers;
    const all = (await list(c.patient, c.context, '?limit=100')).json().data.messages.map((m: { id: number }) => m.id);
    expect(seen).toEqual(all);
    expect(new Set(seen).size).toBe(seen.length);
  });
});

describe('replies', () => {
  it('a reply names a message of the same session; other sessions and unknown ids are 404', async () => {
    const s = await startSession(t);
    const other = await startSession(t);
    const m = await sent(t, s.patient, s.context, { body: 'question' });
    const foreign = await sent(t, other.patient, other.context, { body: 'elsewhere' });
    const r = await send(t, s.doctor, s.context, { body: 'answer', reply_to_message_id: m.id });
    expect(r.statusCode).toBe(201);
    expect(r.json().data.reply_to_message_id).toBe(m.id);
    const bad = await send(t, s.doctor, s.context, { body: 'answer', reply_to_message_id: foreign.id });
    expect(bad.statusCode).toBe(404);
    const none = await send(t, s.doctor, s.context, { body: 'answer', reply_to_message_id: 9_000_000_000 });
    expect(none.statusCode).toBe(404);
    // The same in an active session (the one-statement path declines, the explicit path explains).
    const bad2 = await send(t, s.patient, s.context, { body: 'again', reply_to_message_id: foreign.id });
    expect(bad2.statusCode).toBe(404);
    const ok2 = await send(t, s.patient, s.context, { body: 'again', reply_to_message_id: r.json().data.id });
    expect(ok2.statusCode).toBe(201);
  });
});

describe('reactions', () => {
  it('add and remove are idempotent and unique per message, user and emoji', async () => {
    const s = await startSession(t);
    const m = await sent(t, s.patient, s.context);
    const url = `/api/v2/sessions/${s.context}/messages/${m.id}/reactions`;
    const add = async (u: StartedSession['patient'], reaction: string) =>
      t.app.inject({ method: 'POST', url, headers: await t.auth(u), payload: { reaction } });
    const del = async (u: StartedSession['patient'], reaction: string) =>
      t.app.inject({ method: 'DELETE', url: `${url}/${encodeURIComponent(reaction)}`, headers: await t.auth(u) });

    const a = await add(s.doctor, '👍');
    expect(a.statusCode).toBe(201);
    expect(a.json().data).toEqual({ message_id: m.id, reaction: '👍', user_id: s.doctor.id, changed: true });
    const again = await add(s.doctor, '👍');
    expect(again.statusCode).toBe(200);
    expect(again.json().data.changed).toBe(false);
    await Promise.all([add(s.patient, '👍'), add(s.patient, '👍'), add(s.patient, '❤️')]);
    const rows = await t.ctx.db.selectFrom('message_reactions').selectAll().where('message_id', '=', m.id).execute();
    expect(rows).toHaveLength(3);
    const page = (await list(s.patient, s.context)).json().data;
    expect(page.messages[0].reactions).toHaveLength(3);

    const d = await del(s.doctor, '👍');
    expect(d.json().data.changed).toBe(true);
    expect((await del(s.doctor, '👍')).json().data.changed).toBe(false);
    expect(events.some((e) => e.type === 'reaction.removed' && (e.payload as { message_id: number }).message_id === m.id)).toBe(true);
  });

  it('refuses bad reactions and messages of other sessions', async () => {
    const s = await startSession(t);
    const other = await startSession(t);
    const m = await sent(t, s.patient, s.context);
    const foreign = await sent(t, other.patient, other.context);
    const headers = await t.auth(s.patient);
    const post = (id: number, reaction: string) =>
      t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/messages/${id}/reactions`, headers, payload: { reaction } });
    expect((await post(foreign.id, '👍')).statusCode).toBe(404);
    expect((await post(m.id, '<b>')).statusCode).toBe(400);
    expect((await post(m.id, 'two words')).statusCode).toBe(400);
    expect((await post(m.id, 'x'.repeat(11))).statusCode).toBe(400);
  });
});

describe('typing', () => {
  it('is published on the bus, throttled, never stored, and refused in ended sessions', async () => {
    const s = await startSession(t);
    const headers = await t.auth(s.patient);
    const typing = (v: boolean) =>
      t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/typing`, headers, payload: { typing: v } });
    const before = events.length;
    const a = await typing(true);
    expect(a.statusCode).toBe(200);
    expect(a.json().data).toMatchObject({ typing: true, throttled: false });
    const ttl = Date.parse(a.json().data.expires_at) - Date.now();
    expect(ttl).toBeGreaterThan(6_000);
    expect(ttl).toBeLessThanOrEqual(8_000);
    expect((await typing(true)).json().data.throttled).toBe(true);
    expect((await typing(false)).json().data).toMatchObject({ typing: false, expires_at: null, throttled: false });
    await new Promise((r) => setImmediate(r));
    const typingEvents = events.slice(before).filter((e) => e.type === 'typing' && e.sessionId === s.sessionId);
    expect(typingEvents.map((e) => (e.payload as { typing: boolean }).typing)).toEqual([true, false]);
    expect(typingEvents[0]!.payload).toMatchObject({ user_id: s.patient.id, user_name: s.patient.name, session_context: s.context });

    await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/end`, headers });
    const ended = await typing(true);
    expect(ended.statusCode).toBe(403);
    expect(ended.json().error_code).toBe('SESSION_NOT_ACTIVE');
  });
});

describe('read horizon', () => {
  it('moves only forward; unread counts are derived from it', async () => {
    const s = await startSession(t);
    const m1 = await sent(t, s.patient, s.context, { body: '1' });
    const m2 = await sent(t, s.patient, s.context, { body: '2' });
    const m3 = await sent(t, s.patient, s.context, { body: '3' });
    const headers = await t.auth(s.doctor);
    const read = (id: number) =>
      t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/read`, headers, payload: { message_id: id } });
    expect((await list(s.doctor, s.context)).json().data.unread_count).toBe(3);
    const r2 = await read(m2.id);
    expect(r2.json().data).toEqual({ last_read_message_id: m2.id, unread_count: 1, moved: true });
    const back = await read(m1.id);
    expect(back.json().data).toEqual({ last_read_message_id: m2.id, unread_count: 1, moved: false });
    await Promise.all([read(m3.id), read(m1.id), read(m2.id)]);
    const page = (await list(s.doctor, s.context)).json().data;
    expect(page).toMatchObject({ last_read_message_id: m3.id, unread_count: 0 });
    // The patient's own messages never count as unread for the patient.
    expect((await list(s.patient, s.context)).json().data.unread_count).toBe(0);
    const other = await startSession(t);
    const foreign = await sent(t, other.patient, other.context);
    expect((await read(foreign.id)).statusCode).toBe(404);
    expect(events.some((e) => e.type === 'read' && e.sessionId === s.sessionId)).toBe(true);
  });
});

describe('access: every operation × participant, other patient, other doctor, admin, anonymous', () => {
  let s: StartedSession;
  let messageId: number;
  let admin: StartedSession['patient'];
  let otherPatient: StartedSession['patient'];
  let otherDoctor: StartedSession['patient'];

  beforeAll(async () => {
    s = await startSession(t);
    messageId = (await sent(t, s.patient, s.context)).id;
    await sent(t, s.doctor, s.context);
    admin = await t.newAdmin();
    otherPatient = await t.newPatient();
    otherDoctor = await t.newDoctor();
  });

  const ops = () => ({
    sendMessage: {
      method: 'POST' as const,
      url: `/api/v2/sessions/${s.context}/messages`,
      payload: () => ({ client_message_id: nextClientId(), type: 'text', body: 'hi' }),
    },
    getMessages: { method: 'GET' as const, url: `/api/v2/sessions/${s.context}/messages`, payload: () => undefined },
    replyToMessage: {
      method: 'POST' as const,
      url: `/api/v2/sessions/${s.context}/messages`,
      payload: () => ({ client_message_id: nextClientId(), type: 'text', body: 're', reply_to_message_id: messageId }),
    },
    addReaction: {
      method: 'POST' as const,
      url: `/api/v2/sessions/${s.context}/messages/${messageId}/reactions`,
      payload: () => ({ reaction: '👍' }),
    },
    removeReaction: {
      method: 'DELETE' as const,
      url: `/api/v2/sessions/${s.context}/messages/${messageId}/reactions/${encodeURIComponent('👍')}`,
      payload: () => undefined,
    },
    startTyping: { method: 'POST' as const, url: `/api/v2/sessions/${s.context}/typing`, payload: () => ({ typing: true }) },
    stopTyping: { method: 'POST' as const, url: `/api/v2/sessions/${s.context}/typing`, payload: () => ({ typing: false }) },
    markAsRead: { method: 'POST' as const, url: `/api/v2/sessions/${s.context}/read`, payload: () => ({ message_id: messageId }) },
  });

  type Who = 'patient' | 'doctor' | 'otherPatient' | 'otherDoctor' | 'admin' | 'anonymous';
  const expected: Record<Who, (op: string) => number> = {
    patient: (op) => (op === 'sendMessage' || op === 'replyToMessage' || op === 'addReaction' ? 201 : 200),
    doctor: (op) => (op === 'sendMessage' || op === 'replyToMessage' || op === 'addReaction' ? 201 : 200),
    otherPatient: () => 403,
    otherDoctor: () => 403,
    admin: (op) => (op === 'getMessages' ? 200 : 403),
    anonymous: () => 401,
  };

  for (const who of ['patient', 'doctor', 'otherPatient', 'otherDoctor', 'admin', 'anonymous'] as const) {
    for (const op of [
      'sendMessage',
      'getMessages',
      'replyToMessage',
      'addReaction',
      'removeReaction',
      'startTyping',
      'stopTyping',
      'markAsRead',
    ] as const) {
      it(`${op} as ${who} → ${expected[who](op)}`, async () => {
        const user = { patient: s.patient, doctor: s.doctor, otherPatient, otherDoctor, admin, anonymous: null }[who];
        const o = ops()[op];
        // A request refused before its body is read (401) counts as the route's first operation.
        const counted =
          who === 'anonymous' ? (({ replyToMessage: 'sendMessage', stopTyping: 'startTyping' } as Record<string, string>)[op] ?? op) : op;
        const before = await metricValue(t, 'chat_operations_total', { operation: counted, path: 'session' });
        const res = await t.app.inject({ method: o.method, url: o.url, headers: user ? await t.auth(user) : {}, payload: o.payload() });
        expect(res.statusCode, res.body).toBe(expected[who](op));
        if (res.statusCode >= 400)
          expect(res.json().error_code).toBe({ 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN' }[res.statusCode as 401 | 403]);
        expect(await metricValue(t, 'chat_operations_total', { operation: counted, path: 'session' })).toBe(before + 1);
      });
    }
  }

  it('unknown sessions are 404 and malformed contexts 400 for every route', async () => {
    const headers = await t.auth(s.patient);
    const unknown = 'text_session:987654321';
    expect((await t.app.inject({ url: `/api/v2/sessions/${unknown}/messages`, headers })).statusCode).toBe(404);
    expect((await send(t, s.patient, unknown)).statusCode).toBe(404);
    expect((await send(t, s.patient, String(s.sessionId))).statusCode).toBe(400);
    expect((await send(t, s.patient, 'direct_session_abc')).json().error_code).toBe('SESSION_CONTEXT_REQUIRED');
    expect(
      (await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${unknown}/typing`, headers, payload: { typing: true } })).statusCode,
    ).toBe(404);
    expect(
      (await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${unknown}/read`, headers, payload: { message_id: 1 } })).statusCode,
    ).toBe(404);
    expect(
      (
        await t.app.inject({
          method: 'POST',
          url: `/api/v2/sessions/${unknown}/messages/1/reactions`,
          headers,
          payload: { reaction: '👍' },
        })
      ).statusCode,
    ).toBe(404);
  });
});
