/**
 * The original app's WebSocket protocol with real `ws` clients against the app
 * listening on a real port: the handshake (`no-compression` echoed, `connection-established`),
 * who is refused, chat frames stored through the core and delivered to the other party, typing,
 * read receipts, a message sent over /api/v2 REST reaching the app's socket, and call signalling
 * relayed to the other participant only — from the token-less call sockets the store build opens;
 * and the socket hub's rules shared with /api/v2/ws: revocation, per-frame authorization against
 * the current user and session, the per-user connection cap and handshake rate.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { User } from '../../src/db/types.js';
import { redactUrl } from '../../src/lib/logger.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { WsClient, type Frame } from '../helpers/ws-client.js';
import { sent, startSession, type StartedSession } from '../integration/chat-helpers.js';

/** An app socket: one sub-protocol, `no-compression`, as the app opens it; ready on `connection-established`. */
type AppSocket = WsClient;
const openAppSocket = (url: string): Promise<AppSocket> =>
  WsClient.open(url, ['no-compression'], (f) => f.type.endsWith('connection-established'));

let t: TestHarness;
let base: string;

async function listening(h: TestHarness) {
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  return `ws://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
}
const sockets: AppSocket[] = [];

beforeAll(async () => {
  t = await createHarness();
  base = await listening(t);
});
afterAll(async () => {
  for (const s of sockets) s.ws.terminate();
  await t.close();
});

async function dial(path: string, query: Record<string, string | number>) {
  const qs = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString();
  const s = await openAppSocket(`${base}${path}?${qs}`);
  sockets.push(s);
  return s;
}
const chatSocket = async (user: User, appointmentId: string) =>
  dial('/chat-signaling', { appointmentId, userId: user.id, authToken: await t.token(user) });
const refused = (path: string, query: Record<string, string | number>) =>
  dial(path, query).then(
    () => 'opened',
    (e: Error) => e.message,
  );

describe('handshake', () => {
  let s: StartedSession;
  beforeAll(async () => {
    s = await startSession(t);
  });

  it('echoes no-compression and says connection-established with the id as sent', async () => {
    const label = `text_session_${s.sessionId}`;
    const qs = new URLSearchParams({ appointmentId: label, userId: String(s.patient.id), authToken: await t.token(s.patient) });
    const ws = new WebSocket(`${base}/chat-signaling?${qs}`, ['no-compression']);
    const first = await new Promise<Frame>((resolve, reject) => {
      ws.once('message', (raw) => resolve(JSON.parse(raw.toString()) as Frame));
      ws.once('error', reject);
    });
    expect(ws.protocol).toBe('no-compression');
    expect(first).toMatchObject({ type: 'connection-established', appointmentId: label, connectionType: 'chat' });
    expect(typeof first['timestamp']).toBe('string');
    ws.close();
  });

  it('refuses a stranger, a token of someone else, a bad token, and a chat socket without a token', async () => {
    const label = `text_session_${s.sessionId}`;
    const stranger = await t.newPatient();
    expect(await refused('/chat-signaling', { appointmentId: label, userId: stranger.id, authToken: await t.token(stranger) })).toBe(
      'HTTP 403',
    );
    expect(await refused('/chat-signaling', { appointmentId: label, userId: s.patient.id, authToken: await t.token(s.doctor) })).toBe(
      'HTTP 403',
    );
    expect(await refused('/chat-signaling', { appointmentId: label, userId: s.patient.id, authToken: 'not.a.jwt' })).toBe('HTTP 401');
    expect(await refused('/chat-signaling', { appointmentId: label, userId: s.patient.id })).toBe('HTTP 401');
    // A call socket without a token may only join a live call: a text session is not one.
    expect(await refused('/call-signaling', { appointmentId: label, userId: s.patient.id, userType: 'patient' })).toBe('HTTP 403');
    expect(await refused('/chat-signaling', { userId: s.patient.id, authToken: await t.token(s.patient) })).toBe('HTTP 400');
  });

  it('the token in the URL never reaches a log line', () => {
    expect(redactUrl('/chat-signaling?appointmentId=text_session_1&userId=2&authToken=eyJ.secret.sig')).toBe(
      '/chat-signaling?appointmentId=text_session_1&userId=2&authToken=[redacted]',
    );
  });

  it('the notification socket is answered and told nothing else', async () => {
    const n = await dial('/incoming-call-notifications', { userId: s.doctor.id });
    n.send({ type: 'ping', timestamp: Date.now() });
    expect((await n.next((f) => f.type === 'pong')).type).toBe('pong');
  });
});

describe('a patient and a doctor in one chat room', () => {
  let s: StartedSession;
  let patient: AppSocket;
  let doctor: AppSocket;
  beforeAll(async () => {
    s = await startSession(t);
    // The two sides name the room differently; it is one room.
    patient = await chatSocket(s.patient, `text_session_${s.sessionId}`);
    doctor = await chatSocket(s.doctor, String(s.appointmentId));
  });

  const messagesOf = async (user: User) => {
    const res = await t.app.inject({ url: `/api/v2/sessions/${s.context}/messages`, headers: await t.auth(user) });
    return res.json().data as {
      messages: { id: number; body: string; client_message_id: string | null }[];
      last_read_message_id: number | null;
    };
  };

  it('a flat chat-message is stored once (also when the app sends it over REST too) and delivered to the other party', async () => {
    const tempId = `msg_${Date.now()}_abc`;
    patient.send({
      type: 'chat-message',
      content: 'Hello doctor',
      messageType: 'text',
      senderId: s.patient.id,
      senderName: 'P',
      tempId,
      createdAt: new Date().toISOString(),
      deliveryStatus: 'sending',
    });
    const got = await doctor.next((f) => f.type === 'chat-message');
    expect(got.appointmentId).toBe(String(s.appointmentId));
    expect(got.message).toMatchObject({
      id: expect.any(Number),
      sender_id: s.patient.id,
      sender_name: expect.any(String),
      message: 'Hello doctor',
      message_type: 'text',
      media_url: null,
      temp_id: tempId,
      delivery_status: 'sent',
      read_by: [],
    });
    expect(new Date(got.message.created_at as string).toISOString()).toBe(got.message.created_at);

    // The app's REST send of the same message (temp_id) returns the stored one: still one message.
    const rest = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers: await t.auth(s.patient),
      payload: { client_message_id: tempId, type: 'text', body: 'Hello doctor' },
    });
    expect(rest.json().data.id).toBe(got.message.id);
    const stored = (await messagesOf(s.patient)).messages.filter((m) => m.client_message_id === tempId);
    expect(stored).toHaveLength(1);
    expect(await doctor.never((f) => f.type === 'chat-message')).toBe(true);
  });

  it('a chat-message on an appointment-keyed socket is a legacy send: the guard allows it (phase 1) and records it', async () => {
    doctor.send({
      type: 'chat-message',
      content: 'Doctor here',
      messageType: 'text',
      senderId: s.doctor.id,
      tempId: `msg_${Date.now()}_doc`,
    });
    const got = await patient.next((f) => f.type === 'chat-message' && f.message.message === 'Doctor here');
    expect(got.message.sender_id).toBe(s.doctor.id);
    const events = await t.ctx.db
      .selectFrom('guard_event_log')
      .select(['operation', 'outcome'])
      .where('appointment_id', '=', s.appointmentId)
      .where('user_id', '=', s.doctor.id)
      .execute();
    expect(events).toContainEqual({ operation: 'sendMessage', outcome: 'would_block' });
  });

  it('typing reaches the other party only', async () => {
    doctor.send({ type: 'typing-indicator', appointmentId: String(s.appointmentId), isTyping: true, senderId: s.doctor.id });
    const f = await patient.next((x) => x.type === 'typing-indicator');
    expect(f).toMatchObject({ isTyping: true, senderId: s.doctor.id });
    expect(await doctor.never((x) => x.type === 'typing-indicator')).toBe(true);
  });

  it("a read receipt moves the reader's horizon and reaches the sender", async () => {
    const m = await sent(t, s.patient, s.context, { body: 'Are you there?' });
    await doctor.next((f) => f.type === 'chat-message' && f.message.id === m.id);
    doctor.send({ type: 'read-receipt', appointmentId: String(s.appointmentId), messageId: String(m.id), senderId: s.doctor.id });
    const f = await patient.next((x) => x.type === 'read-receipt');
    expect(f).toMatchObject({ messageId: String(m.id), senderId: s.doctor.id });
    expect((await messagesOf(s.doctor)).last_read_message_id).toBe(m.id);
  });

  it('a message sent over /api/v2 REST reaches the app socket as a chat-message frame', async () => {
    const m = await sent(t, s.doctor, s.context, { body: 'Yes, how can I help?' });
    const f = await patient.next((x) => x.type === 'chat-message' && x.message.id === m.id);
    expect(f.message).toMatchObject({ message: 'Yes, how can I help?', sender_id: s.doctor.id, message_type: 'text' });
  });

  it('delivery-status and session-ended are relayed with the server-set sender', async () => {
    patient.send({ type: 'delivery-status', appointmentId: 'x', messageId: '5', status: 'delivered', senderId: 999 });
    const f = await doctor.next((x) => x.type === 'delivery-status');
    expect(f).toMatchObject({ messageId: '5', status: 'delivered', senderId: s.patient.id, appointmentId: String(s.appointmentId) });
  });

  it('session-status-request is answered with the timer fields the app reads', async () => {
    patient.send({ type: 'session-status-request', appointmentId: `text_session_${s.sessionId}` });
    const f = await patient.next((x) => x.type === 'session-status-response');
    expect(f).toMatchObject({ appointmentId: `text_session_${s.sessionId}`, sessionData: { id: s.sessionId, status: 'active' } });
    expect(typeof f.timerActive).toBe('boolean');
    expect(f.hasDoctorResponse).toBe(true);
  });

  it('ending the session is announced as session-ended', async () => {
    await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/end`, headers: await t.auth(s.patient) });
    const f = await doctor.next((x) => x.type === 'session-ended');
    expect(f).toMatchObject({ appointmentId: String(s.appointmentId), status: 'ended' });
  });
});

describe('call signalling', () => {
  it('offer / answer / ICE reach only the other participant, from token-less call sockets; the end closes them', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await t.giveCredits(patient, { video: 1 });
    const key = `direct_session_${Date.now()}`;
    const start = await t.app.inject({
      method: 'POST',
      url: '/api/call-sessions/start',
      headers: await t.auth(patient),
      payload: { call_type: 'video', appointment_id: key, doctor_id: doctor.id },
    });
    expect(start.statusCode).toBe(200);

    // What the store build's call services dial: no token.
    const p = await dial('/call-signaling', { appointmentId: key, userId: patient.id, userType: 'patient' });
    const d = await dial('/audio-signaling', { appointmentId: key, userId: doctor.id, userType: 'doctor' });
    // The doctor's chat screen on the same call, with a token: the same room.
    const dChat = await chatSocket(doctor, `call_session:${start.json().data.session_id}`);

    const stranger = await t.newPatient();
    expect(await refused('/call-signaling', { appointmentId: key, userId: stranger.id, userType: 'patient' })).toBe('HTTP 403');
    expect(await refused('/call-signaling', { appointmentId: key, userId: stranger.id, authToken: await t.token(stranger) })).toBe(
      'HTTP 403',
    );

    p.send({
      type: 'offer',
      offer: { type: 'offer', sdp: 'v=0 patient-offer' },
      senderId: 12345,
      appointmentId: key,
      userId: patient.id,
      userType: 'patient',
    });
    const offer = await d.next((f) => f.type === 'offer');
    expect(offer).toMatchObject({ offer: { sdp: 'v=0 patient-offer' }, senderId: patient.id, appointmentId: key });
    expect((await dChat.next((f) => f.type === 'offer')).appointmentId).toBe(`call_session:${start.json().data.session_id}`);

    d.send({ type: 'answer', answer: { type: 'answer', sdp: 'v=0 doctor-answer' }, senderId: doctor.id, appointmentId: key });
    d.send({
      type: 'ice-candidate',
      candidate: { candidate: 'candidate:1 1 udp 1 10.0.0.1 9 typ host' },
      senderId: doctor.id,
      appointmentId: key,
    });
    expect((await p.next((f) => f.type === 'answer')).answer.sdp).toBe('v=0 doctor-answer');
    expect((await p.next((f) => f.type === 'ice-candidate')).senderId).toBe(doctor.id);
    // Nobody hears their own signals.
    expect(await p.never((f) => f.type === 'offer')).toBe(true);
    expect(await d.never((f) => f.type === 'answer' || f.type === 'ice-candidate')).toBe(true);

    // A token-less socket carries call signalling only.
    d.send({ type: 'chat-message', content: 'hi', tempId: 'msg_1' });
    expect((await d.next((f) => f.type === 'error')).of).toBe('chat-message');

    await t.app.inject({
      method: 'POST',
      url: '/api/call-sessions/answer',
      headers: await t.auth(doctor),
      payload: { appointment_id: key },
    });
    await t.app.inject({
      method: 'POST',
      url: '/api/call-sessions/end',
      headers: await t.auth(patient),
      payload: { appointment_id: key, call_type: 'video' },
    });
    expect((await d.next((f) => f.type === 'call-ended')).appointmentId).toBe(key);
    expect((await d.closed).code).toBe(1000);
    expect((await p.closed).code).toBe(1000);
    expect((await dChat.next((f) => f.type === 'session-ended')).status).toBe('ended');
  });

  it('a booked call: the patient by appointment id and the doctor by call session share one room', async () => {
    const appt = await t.newAppointment({ appointment_type: 'voice' });
    await t.giveCredits(appt.patient, { voice: 1 });
    const start = await t.app.inject({
      method: 'POST',
      url: '/api/call-sessions/start',
      headers: await t.auth(appt.patient),
      payload: { call_type: 'voice', appointment_id: String(appt.id) },
    });
    const sessionId = start.json().data.session_id as number;
    const p = await dial('/call-signaling', { appointmentId: String(appt.id), userId: appt.patient.id, userType: 'patient' });
    const d = await dial('/call-signaling', {
      appointmentId: `call_session:${sessionId}`,
      userId: appt.doctor.id,
      authToken: await t.token(appt.doctor),
    });
    d.send({
      type: 'call-answered',
      appointmentId: String(appt.id),
      userId: appt.doctor.id,
      senderId: appt.doctor.id,
      timestamp: Date.now(),
    });
    expect(await p.next((f) => f.type === 'call-answered')).toMatchObject({ senderId: appt.doctor.id, appointmentId: String(appt.id) });
    p.send({ type: 'resend-offer-request', appointmentId: String(appt.id), userId: appt.patient.id });
    expect((await d.next((f) => f.type === 'resend-offer-request')).senderId).toBe(appt.patient.id);
  });
});

describe('phase 3 (ENFORCE_SESSION_GATED_CHAT): the same guard as the REST door', () => {
  const saved: { t?: TestHarness; base?: string } = {};
  beforeAll(async () => {
    saved.t = t;
    saved.base = base;
    t = await createHarness({ flags: { ENFORCE_SESSION_GATED_CHAT: true } });
    base = await listening(t);
  });
  afterAll(async () => {
    await t.close();
    t = saved.t!;
    base = saved.base!;
  });

  it('an appointment-keyed chat-message is refused with SESSION_CONTEXT_REQUIRED and a message; session-keyed chat and call frames keep working', async () => {
    const s = await startSession(t);
    const patient = await chatSocket(s.patient, `text_session_${s.sessionId}`);
    const doctor = await chatSocket(s.doctor, String(s.appointmentId));
    doctor.send({ type: 'chat-message', content: 'By appointment', messageType: 'text', senderId: s.doctor.id, tempId: 'msg_1_blocked' });
    const err = await doctor.next((f) => f.type === 'error');
    expect(err).toMatchObject({
      of: 'chat-message',
      error_code: 'SESSION_CONTEXT_REQUIRED',
      session_context: s.context,
      message: expect.any(String),
    });
    const blocked = await t.ctx.db
      .selectFrom('guard_events')
      .select(['operation', 'outcome'])
      .where('appointment_id', '=', s.appointmentId)
      .execute();
    expect(blocked).toContainEqual({ operation: 'sendMessage', outcome: 'blocked' });
    expect(await patient.never((f) => f.type === 'chat-message')).toBe(true);

    patient.send({ type: 'chat-message', content: 'By session', messageType: 'text', senderId: s.patient.id, tempId: 'msg_2_ok' });
    expect((await doctor.next((f) => f.type === 'chat-message')).message.message).toBe('By session');
    doctor.send({ type: 'call-answered', appointmentId: String(s.appointmentId), senderId: s.doctor.id });
    expect((await patient.next((f) => f.type === 'call-answered')).senderId).toBe(s.doctor.id);
  });
});

/** A video call started by the store build's call screen (a `direct_session_*` key), live. */
async function liveCall(h: TestHarness) {
  const patient = await h.newPatient();
  const doctor = await h.newDoctor();
  await h.giveCredits(patient, { video: 1 });
  const key = `direct_session_${Date.now()}_${patient.id}`;
  const start = await h.app.inject({
    method: 'POST',
    url: '/api/call-sessions/start',
    headers: await h.auth(patient),
    payload: { call_type: 'video', appointment_id: key, doctor_id: doctor.id },
  });
  expect(start.statusCode).toBe(200);
  return { patient, doctor, key, sessionId: start.json().data.session_id as number };
}

describe('access after the handshake: the socket hub of /api/v2/ws', () => {
  const storedBodies = async (s: StartedSession) =>
    (await t.ctx.db.selectFrom('messages').select('body').where('session_id', '=', s.sessionId).execute()).map((m) => m.body);

  it("a deactivated user's app sockets (chat, and token-less call) are closed at once and receive nothing more", async () => {
    const s = await startSession(t);
    const admin = await t.newAdmin();
    const sock = await chatSocket(s.patient, `text_session_${s.sessionId}`);
    await sent(t, s.doctor, s.context, { body: 'before' });
    await sock.next((f) => f.type === 'chat-message' && f.message.message === 'before');
    const call = await liveCall(t);
    const callSock = await dial('/call-signaling', { appointmentId: call.key, userId: call.doctor.id, userType: 'doctor' });

    for (const u of [s.patient, call.doctor]) {
      const res = await t.app.inject({ method: 'POST', url: `/api/v2/admin/users/${u.id}/deactivate`, headers: await t.auth(admin) });
      expect(res.statusCode).toBe(200);
    }
    expect((await sock.closedWithin(3_000)).code).toBe(4003);
    expect((await callSock.closedWithin(3_000)).code).toBe(4003);
    await sent(t, s.doctor, s.context, { body: 'after' });
    expect(sock.frames.some((f) => f.type === 'chat-message' && f.message.message === 'after')).toBe(false);
    // Neither door opens again: the token is refused, and a token-less socket names no active user.
    expect(
      await refused('/chat-signaling', {
        appointmentId: `text_session_${s.sessionId}`,
        userId: s.patient.id,
        authToken: await t.token(s.patient),
      }),
    ).toBe('HTTP 401');
    expect(await refused('/call-signaling', { appointmentId: call.key, userId: call.doctor.id, userType: 'doctor' })).toBe('HTTP 404');
  });

  it('a user demoted without a signal is cut off at their next frame, which is not acted on', async () => {
    const s = await startSession(t);
    const patient = await chatSocket(s.patient, `text_session_${s.sessionId}`);
    const doctor = await chatSocket(s.doctor, `text_session_${s.sessionId}`);
    await t.ctx.db.updateTable('users').set({ role: 'patient' }).where('id', '=', s.doctor.id).execute();
    doctor.send({ type: 'chat-message', content: 'from a former doctor', messageType: 'text', tempId: 'msg_demoted' });
    expect((await doctor.closedWithin(3_000)).code).toBe(4003);
    expect(await patient.never((f) => f.type === 'chat-message')).toBe(true);
    expect(await storedBodies(s)).not.toContain('from a former doctor');
  });

  it('each frame is checked against the session as it is now, not as it was at the handshake or the last event', async () => {
    const s = await startSession(t);
    const patient = await chatSocket(s.patient, `text_session_${s.sessionId}`);
    const doctor = await chatSocket(s.doctor, String(s.appointmentId));
    // Ended behind the sockets' back (no event reaches them): only a re-read can know.
    await t.ctx.db
      .updateTable('sessions')
      .set({ status: 'ended', ended_at: new Date(), end_reason: 'manual' })
      .where('id', '=', s.sessionId)
      .execute();
    patient.send({ type: 'typing-indicator', isTyping: true });
    expect(await patient.next((f) => f.type === 'error' && f.of === 'typing-indicator')).toMatchObject({
      error_code: 'SESSION_NOT_ACTIVE',
    });
    patient.send({ type: 'chat-message', content: 'too late', messageType: 'text', tempId: 'msg_too_late' });
    expect((await patient.next((f) => f.type === 'error' && f.of === 'chat-message')).error_code).toEqual(expect.any(String));
    doctor.send({ type: 'offer', offer: { type: 'offer', sdp: 'v=0 late' } });
    expect(await doctor.next((f) => f.type === 'error' && f.of === 'offer')).toMatchObject({ error_code: 'SESSION_NOT_ACTIVE' });
    expect(await doctor.never((f) => f.type === 'typing-indicator' || f.type === 'chat-message')).toBe(true);
    expect(await patient.never((f) => f.type === 'offer')).toBe(true);
    expect(await storedBodies(s)).not.toContain('too late');
  });
});

describe('the per-user connection cap and handshake rate count app sockets with /api/v2/ws', () => {
  const saved: { t?: TestHarness; base?: string } = {};
  beforeAll(async () => {
    saved.t = t;
    saved.base = base;
    t = await createHarness({ env: { WS_MAX_CONNECTIONS_PER_USER: '2', RATE_LIMIT_WS_CONNECT_PER_MINUTE: '4' } });
    base = await listening(t);
  });
  afterAll(async () => {
    await t.close();
    t = saved.t!;
    base = saved.base!;
  });
  const v2 = async (user: User) => {
    const c = await WsClient.open(`${base}/api/v2/ws`, ['bearer', await t.token(user)]);
    return c;
  };

  it('at most WS_MAX_CONNECTIONS_PER_USER sockets per user, whichever route opened them (429 above)', async () => {
    const s = await startSession(t);
    const label = `text_session_${s.sessionId}`;
    const gw = await v2(s.patient);
    const app = await chatSocket(s.patient, label);
    expect(await refused('/chat-signaling', { appointmentId: label, userId: s.patient.id, authToken: await t.token(s.patient) })).toBe(
      'HTTP 429',
    );
    await expect(v2(s.patient)).rejects.toThrow('HTTP 429');
    // Another user is not affected.
    await chatSocket(s.doctor, label);
    app.ws.close();
    await app.closed;
    await expect
      .poll(
        () =>
          chatSocket(s.patient, label).then(
            () => true,
            () => false,
          ),
        { timeout: 3_000 },
      )
      .toBe(true);
    gw.close();
  });

  it('RATE_LIMIT_WS_CONNECT_PER_MINUTE handshakes per user, the two routes together', async () => {
    const s = await startSession(t);
    const label = `text_session_${s.sessionId}`;
    for (let i = 0; i < 4; i++) {
      const c = i % 2 === 0 ? await chatSocket(s.doctor, label) : await v2(s.doctor);
      c.ws.close();
      await c.closed;
    }
    expect(await refused('/chat-signaling', { appointmentId: label, userId: s.doctor.id, authToken: await t.token(s.doctor) })).toBe(
      'HTTP 429',
    );
    await expect(v2(s.doctor)).rejects.toThrow('HTTP 429');
  });
});
