/**
 * Abuse, inside one process (test/reliability/revocation.test.ts covers several processes):
 * deactivation (route, every authentication door, sockets), WebSocket access re-checked after the
 * handshake (demotion, deletion, connection cap, handshake rate), per-identity rate limits, and a
 * refused typing request that changes nothing.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { WsClient } from '../helpers/ws-client.js';
import { send, sent, startSession } from './chat-helpers.js';

let t: TestHarness;
const clients: WsClient[] = [];
const wsUrl = () => `ws://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/api/v2/ws`;
const connect = async (user: Pick<User, 'id' | 'role'>) => {
  const c = await WsClient.open(wsUrl(), ['bearer', await t.token(user)]);
  clients.push(c);
  return c;
};

beforeAll(async () => {
  t = await createHarness({
    env: {
      RATE_LIMIT_CHAT_BURST: '5',
      RATE_LIMIT_CHAT_WINDOW_SECONDS: '60',
      RATE_LIMIT_WRITE_PER_MINUTE: '8',
      RATE_LIMIT_WS_CONNECT_PER_MINUTE: '4',
      WS_MAX_CONNECTIONS_PER_USER: '2',
      WS_ACCESS_RECHECK_SECONDS: '1',
    },
  });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await t?.close();
});

describe('deactivation', () => {
  it('an admin deactivates a user: records stay, every door answers 401, the open socket is closed and gets nothing more', async () => {
    const s = await startSession(t);
    const admin = await t.newAdmin();
    const m = await sent(t, s.patient, s.context, { body: 'before' });
    const sock = await connect(s.patient);
    expect((await sock.request({ type: 'subscribe', session_context: s.context })).type).toBe('subscribed');

    expect(
      (await t.app.inject({ method: 'POST', url: `/api/v2/admin/users/${s.patient.id}/deactivate`, headers: await t.auth(s.doctor) }))
        .statusCode,
    ).toBe(403);
    const res = await t.app.inject({ method: 'POST', url: `/api/v2/admin/users/${s.patient.id}/deactivate`, headers: await t.auth(admin) });
    expect(res.statusCode).toBe(200);
    expect(res.json().data.deactivated_at).toEqual(expect.any(String));
    expect((await sock.closedWithin(3_000)).code).toBe(4003);

    const auth = await t.auth(s.patient);
    expect((await t.app.inject({ method: 'GET', url: '/api/v2/me', headers: auth })).statusCode).toBe(401);
    // The hot paths that load the user inside their own statement.
    expect((await send(t, s.patient, s.context)).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'GET', url: `/api/v2/appointments/${s.appointmentId}/session`, headers: auth })).statusCode).toBe(
      401,
    );
    await expect(WsClient.open(wsUrl(), ['bearer', await t.token(s.patient)])).rejects.toThrow('HTTP 401');
    // Records stay.
    expect(await t.ctx.db.selectFrom('messages').select('id').where('id', '=', m.id).executeTakeFirst()).toBeTruthy();
    // Idempotent; unknown users 404; an admin cannot lock themselves out.
    expect(
      (await t.app.inject({ method: 'POST', url: `/api/v2/admin/users/${s.patient.id}/deactivate`, headers: await t.auth(admin) }))
        .statusCode,
    ).toBe(200);
    expect(
      (await t.app.inject({ method: 'POST', url: '/api/v2/admin/users/999999/deactivate', headers: await t.auth(admin) })).statusCode,
    ).toBe(404);
    expect(
      (await t.app.inject({ method: 'POST', url: `/api/v2/admin/users/${admin.id}/deactivate`, headers: await t.auth(admin) })).statusCode,
    ).toBe(400);
  });

  it('a deactivated doctor cannot be booked', async () => {
    const doctor = await t.newDoctor();
    const patient = await t.newPatient();
    await t.giveCredits(patient, { text: 1 });
    await t.ctx.db.updateTable('users').set({ deactivated_at: new Date() }).where('id', '=', doctor.id).execute();
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v2/appointments',
      headers: await t.auth(patient),
      payload: { doctor_id: doctor.id, scheduled_at: new Date(Date.now() + 86_400_000).toISOString(), appointment_type: 'text' },
    });
    expect(res.statusCode).toBe(404);
  });
});

describe('WebSocket access after the handshake', () => {
  it('a demoted admin loses the subscription and the socket (periodic re-check), and receives nothing more', async () => {
    const s = await startSession(t);
    const admin = await t.newAdmin();
    const sock = await connect(admin);
    expect((await sock.request({ type: 'subscribe', session_context: s.context })).access).toBe('admin');
    await sent(t, s.patient, s.context, { body: 'seen by the admin' });
    await sock.next((f) => f.type === 'message.created');
    await t.ctx.db.updateTable('users').set({ role: 'patient' }).where('id', '=', admin.id).execute();
    await sent(t, s.patient, s.context, { body: 'private' });
    expect((await sock.closedWithin(3_000)).code).toBe(4003);
    expect(sock.frames.filter((f) => f.type === 'message.created' && f.data.body === 'private').length).toBeLessThanOrEqual(1);
  });

  it('a deleted user is cut off at their next message, before the re-check', async () => {
    const admin = await t.newAdmin();
    const s = await startSession(t);
    const sock = await connect(admin);
    await t.ctx.db.deleteFrom('users').where('id', '=', admin.id).execute();
    sock.ws.send(JSON.stringify({ type: 'subscribe', session_context: s.context }));
    const closed = await sock.closedWithin(3_000);
    expect(closed.code).toBe(4003);
    expect(sock.frames.some((f) => f.type === 'subscribed')).toBe(false);
  });

  it('caps open connections per user (429) and handshakes per minute', async () => {
    const p = await t.newPatient();
    const a = await connect(p);
    await connect(p);
    await expect(WsClient.open(wsUrl(), ['bearer', await t.token(p)])).rejects.toThrow('HTTP 429');
    a.ws.close();
    await a.closed;
    // 4 handshakes a minute: two opened, one refused by the cap (counted), one more allowed, then 429.
    await connect(p).catch(() => undefined);
    await expect(WsClient.open(wsUrl(), ['bearer', await t.token(p)])).rejects.toThrow('HTTP 429');
  });
});

describe('rate limits per identity', () => {
  it('chat sends: a burst per user, whatever the spelling of the Authorization header or the token', async () => {
    const s = await startSession(t);
    const token = await t.token(s.patient);
    const other = await t.token(s.patient, 7200);
    const spellings = [`Bearer ${token}`, `bearer ${token}`, `BEARER  ${token}`, `Bearer\t${token}`, `Bearer ${other}`];
    for (const authorization of spellings) {
      const r = await t.app.inject({
        method: 'POST',
        url: `/api/v2/sessions/${s.context}/messages`,
        headers: { authorization },
        payload: { client_message_id: `b-${Math.random()}`, type: 'text', body: 'hi' },
      });
      expect(r.statusCode).toBe(201);
    }
    const over = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers: { authorization: `Bearer ${other}` },
      payload: { client_message_id: 'x', type: 'text', body: 'hi' },
    });
    expect(over.statusCode).toBe(429);
    expect(over.json()).toMatchObject({ error_code: 'RATE_LIMITED', status: 429 });
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    // The legacy send shares the chat budget; the doctor has their own.
    expect(
      (
        await t.app.inject({
          method: 'POST',
          url: `/api/v2/chat/${s.appointmentId}/messages`,
          headers: { authorization: `Bearer ${token}` },
          payload: { message: 'hi', temp_id: 'l1' },
        })
      ).statusCode,
    ).toBe(429);
    expect((await send(t, s.doctor, s.context)).statusCode).toBe(201);
  });

  it('every other write (reactions, read marks, typing) counts against the user', async () => {
    const s = await startSession(t);
    const m = await sent(t, s.doctor, s.context);
    const auth = await t.auth(s.patient);
    const writes = [
      { method: 'POST' as const, url: `/api/v2/sessions/${s.context}/messages/${m.id}/reactions`, payload: { reaction: '👍' } },
      { method: 'DELETE' as const, url: `/api/v2/sessions/${s.context}/messages/${m.id}/reactions/${encodeURIComponent('👍')}` },
      { method: 'POST' as const, url: `/api/v2/sessions/${s.context}/read`, payload: { message_id: m.id } },
      { method: 'POST' as const, url: `/api/v2/sessions/${s.context}/typing`, payload: { typing: true } },
    ];
    const codes: number[] = [];
    // 8 writes a minute; starting the session was the patient's first.
    for (let i = 0; i < 8; i++) codes.push((await t.app.inject({ ...writes[i % writes.length]!, headers: auth })).statusCode);
    expect(codes.slice(0, 7).every((c) => c < 300)).toBe(true);
    expect(codes[7]).toBe(429);
  });
});

describe('requests of one moment share their reads', () => {
  it('a burst sent at once: exactly the burst is accepted, each request answered for its own user', async () => {
    const a = await startSession(t);
    const b = await startSession(t);
    const [ta, tb] = [await t.token(a.patient), await t.token(b.patient)];
    // Twelve sends issued together (two users, same turn of the event loop): the user look-up,
    // the rate-limit counts and the session reads are batched, yet each user gets 5 of their 6.
    const fire = (s: typeof a, token: string, i: number) =>
      t.app.inject({
        method: 'POST',
        url: `/api/v2/sessions/${s.context}/messages`,
        headers: { authorization: `Bearer ${token}` },
        payload: { client_message_id: `burst-${i}`, type: 'text', body: `hi ${i}` },
      });
    const replies = await Promise.all([...[0, 1, 2, 3, 4, 5].map((i) => fire(a, ta, i)), ...[0, 1, 2, 3, 4, 5].map((i) => fire(b, tb, i))]);
    for (const [s, rs] of [
      [a, replies.slice(0, 6)],
      [b, replies.slice(6)],
    ] as const) {
      expect(rs.map((r) => r.statusCode).sort()).toEqual([201, 201, 201, 201, 201, 429]);
      for (const r of rs.filter((r) => r.statusCode === 201)) expect(r.json().data.sender_id).toBe(s.patient.id);
    }
  });
});

describe('a refused request changes nothing', () => {
  it("a stranger's typing does not advance the session (expiry runs only for participants)", async () => {
    const s = await startSession(t);
    // The patient's first message opens the doctor's response window; move it into the past.
    await sent(t, s.patient, s.context);
    await t.ctx.db
      .updateTable('sessions')
      .set({ doctor_response_deadline: new Date(Date.now() - 60_000) })
      .where('id', '=', s.sessionId)
      .execute();
    const stranger = await t.newPatient();
    const r = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/typing`,
      headers: await t.auth(stranger),
      payload: { typing: true },
    });
    expect(r.statusCode).toBe(403);
    const sock = await connect(stranger);
    expect((await sock.request({ type: 'typing', session_context: s.context, typing: true })).error_code).toBe('FORBIDDEN');
    const after = await t.ctx.db.selectFrom('sessions').select('status').where('id', '=', s.sessionId).executeTakeFirstOrThrow();
    expect(after.status).toBe('waiting_for_doctor');
    // The same request by a participant does advance it (so the check above can fail).
    await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/typing`,
      headers: await t.auth(s.patient),
      payload: { typing: true },
    });
    const expired = await t.ctx.db.selectFrom('sessions').select('status').where('id', '=', s.sessionId).executeTakeFirstOrThrow();
    expect(expired.status).toBe('expired');
  });
});

describe('no squatting a calendar', () => {
  const book = async (patient: User, doctor: User, hoursAhead: number, type = 'text') =>
    t.app.inject({
      method: 'POST',
      url: '/api/v2/appointments',
      headers: await t.auth(patient),
      payload: { doctor_id: doctor.id, scheduled_at: new Date(Date.now() + hoursAhead * 3_600_000).toISOString(), appointment_type: type },
    });

  it('booking needs a usable credit of the modality (402)', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    const none = await book(patient, doctor, 24);
    expect(none.statusCode).toBe(402);
    expect(none.json().error_code).toBe('INSUFFICIENT_CREDITS');
    await t.giveCredits(patient, { voice: 1 });
    expect((await book(patient, doctor, 24, 'video')).statusCode).toBe(402);
    expect((await book(patient, doctor, 24, 'audio')).statusCode).toBe(201);
  });

  it('at most MAX_PENDING_BOOKINGS (3) future pending bookings, even when all are sent at once', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await t.giveCredits(patient, { text: 1 });
    const codes = (await Promise.all(Array.from({ length: 8 }, (_, i) => book(patient, doctor, 24 + i)))).map((r) => r.statusCode);
    expect(codes.filter((c) => c === 201)).toHaveLength(3);
    expect(codes.filter((c) => c === 409)).toHaveLength(5);
    // A cancelled one frees its place.
    const mine = await t.ctx.db.selectFrom('appointments').select('id').where('patient_id', '=', patient.id).executeTakeFirstOrThrow();
    expect(
      (await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${mine.id}/cancel`, headers: await t.auth(patient) })).statusCode,
    ).toBe(200);
    expect((await book(patient, doctor, 48)).statusCode).toBe(201);
  });

  it('refuses times too far ahead or outside RFC 3339 years (400, nothing stored)', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await t.giveCredits(patient, { text: 1 });
    for (const at of ['9999-12-31T23:59:59-14:00', '2999-01-01T00:00:00Z', new Date(Date.now() + 400 * 86_400_000).toISOString()]) {
      const r = await t.app.inject({
        method: 'POST',
        url: '/api/v2/appointments',
        headers: await t.auth(patient),
        payload: { doctor_id: doctor.id, scheduled_at: at, appointment_type: 'text' },
      });
      expect(r.statusCode, at).toBe(400);
    }
    const admin = await t.newAdmin();
    const imported = await t.app.inject({
      method: 'POST',
      url: '/api/v2/admin/appointments',
      headers: await t.auth(admin),
      payload: { patient_id: patient.id, doctor_id: doctor.id, scheduled_at: '9999-12-31T23:59:59-14:00', appointment_type: 'text' },
    });
    expect(imported.statusCode).toBe(400);
    expect(await t.ctx.db.selectFrom('appointments').select('id').where('patient_id', '=', patient.id).execute()).toEqual([]);
  });
});
