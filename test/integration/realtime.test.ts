/**
 * The WebSocket gateway with real `ws` clients over real sockets: authentication on connect,
 * subscriptions (participants and read-only admins only), every event type, call signalling to the
 * other participant only, limits (frame size, heartbeat, slow consumers, token expiry) — and, on
 * PostgreSQL, two API processes sharing one database: a message sent through A reaches a
 * subscriber on B (LISTEN/NOTIFY).
 */
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/env.js';
import { FlagService } from '../../src/config/flags.js';
import { closeContext, createContext, type AppContext } from '../../src/context.js';
import type { User } from '../../src/db/types.js';
import chatRoutes from '../../src/modules/chat/routes.js';
import authPlugin from '../../src/plugins/auth.js';
import errorsPlugin from '../../src/plugins/errors.js';
import { Problem } from '../../src/lib/schemas.js';
import { createBusFor } from '../../src/realtime/create-bus.js';
import realtimeGateway from '../../src/gateway/gateway.js';
import { PgBus } from '../../src/realtime/pg-bus.js';
import { TEST_JWT_SECRET, createHarness, type TestHarness } from '../helpers/app.js';
import { isPostgres } from '../helpers/db.js';
import { metricValue, sent, startSession, type StartedSession } from './chat-helpers.js';
import { WsClient as Client } from '../helpers/ws-client.js';

const wsUrl = (app: FastifyInstance, query = '') => `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/v2/ws${query}`;

let t: TestHarness;
const clients: Client[] = [];
const connect = async (app: FastifyInstance, user: Pick<User, 'id' | 'role'>, how: 'protocol' | 'query' = 'protocol') => {
  const token = await t.token(user);
  const c = how === 'protocol' ? await Client.open(wsUrl(app), ['bearer', token]) : await Client.open(wsUrl(app, `?token=${token}`));
  clients.push(c);
  return c;
};

beforeAll(async () => {
  t = await createHarness();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await t?.close();
});

describe('connecting', () => {
  it('refuses the upgrade without a valid token (401), accepts bearer sub-protocol or ?token=', async () => {
    await expect(Client.open(wsUrl(t.app))).rejects.toThrow('HTTP 401');
    await expect(Client.open(wsUrl(t.app), ['bearer', 'not.a.jwt'])).rejects.toThrow('HTTP 401');
    await expect(Client.open(wsUrl(t.app, '?token=abc'))).rejects.toThrow('HTTP 401');
    const expired = await t.token(await t.newPatient(), -10);
    await expect(Client.open(wsUrl(t.app), ['bearer', expired])).rejects.toThrow('HTTP 401');

    const patient = await t.newPatient();
    const a = await connect(t.app, patient, 'protocol');
    expect(a.ws.protocol).toBe('bearer');
    const b = await connect(t.app, patient, 'query');
    expect(b.ws.protocol).toBe('');
    expect(await metricValue(t, 'websocket_connections', {})).toBeGreaterThanOrEqual(2);
    a.close();
    b.close();
    await Promise.all([a.closed, b.closed]);
  });

  it('closes the connection when the token expires (4001)', async () => {
    const token = await t.token(await t.newDoctor(), 1);
    const c = await Client.open(wsUrl(t.app), ['bearer', token]);
    clients.push(c);
    const closed = await c.closed;
    expect(closed.code).toBe(4001);
  });

  it('answers malformed messages with an error, and closes on frames over 64 KiB (1009)', async () => {
    const c = await connect(t.app, await t.newPatient());
    c.ws.send('not json');
    expect((await c.next((f) => f.type === 'error')).error_code).toBe('VALIDATION_FAILED');
    c.ws.send(JSON.stringify({ type: 'subscribe', session_context: 'text_session:1', extra: true }));
    expect((await c.next((f) => f.type === 'error')).error_code).toBe('VALIDATION_FAILED');
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
    c.ws.send('x'.repeat(70 * 1024));
    expect((await c.closed).code).toBe(1009);
  });
});

describe('subscriptions and events', () => {
  let s: StartedSession;
  let patientWs: Client;
  let doctorWs: Client;
  beforeAll(async () => {
    s = await startSession(t);
    patientWs = await connect(t.app, s.patient);
    doctorWs = await connect(t.app, s.doctor);
    for (const c of [patientWs, doctorWs]) {
      const r = await c.request({ type: 'subscribe', session_context: s.context });
      expect(r).toMatchObject({
        type: 'subscribed',
        session_context: s.context,
        session_id: s.sessionId,
        session_status: 'waiting_for_doctor',
      });
    }
  });

  it('only participants and (read-only) admins may subscribe', async () => {
    const stranger = await connect(t.app, await t.newPatient());
    expect(await stranger.request({ type: 'subscribe', session_context: s.context })).toMatchObject({
      type: 'error',
      error_code: 'FORBIDDEN',
    });
    const otherDoctor = await connect(t.app, await t.newDoctor());
    expect(await otherDoctor.request({ type: 'subscribe', session_context: s.context })).toMatchObject({
      type: 'error',
      error_code: 'FORBIDDEN',
    });
    expect(await stranger.request({ type: 'subscribe', session_context: 'text_session:987654321' })).toMatchObject({
      type: 'error',
      error_code: 'NOT_FOUND',
    });
    expect(await stranger.request({ type: 'subscribe', session_context: String(s.sessionId) })).toMatchObject({
      type: 'error',
      error_code: 'VALIDATION_FAILED',
    });
    const admin = await connect(t.app, await t.newAdmin());
    expect(await admin.request({ type: 'subscribe', session_context: s.context })).toMatchObject({ type: 'subscribed', access: 'admin' });
    expect(await admin.request({ type: 'typing', session_context: s.context, typing: true })).toMatchObject({
      type: 'error',
      error_code: 'FORBIDDEN',
    });

    await sent(t, s.patient, s.context, { body: 'for subscribers only' });
    expect((await admin.next((f) => f.type === 'message.created')).data.body).toBe('for subscribers only');
    expect(await stranger.never((f) => f.type === 'message.created')).toBe(true);
  });

  it('message.created and session.status reach both participants', async () => {
    const m = await sent(t, s.doctor, s.context, { body: 'Hello from the doctor\nline 2' });
    for (const c of [patientWs, doctorWs]) {
      const ev = await c.next((f) => f.type === 'message.created' && f.data.id === m.id);
      expect(ev.data).toMatchObject({
        session_context: s.context,
        sender_id: s.doctor.id,
        sender_role: 'doctor',
        body: 'Hello from the doctor\nline 2',
      });
      const st = await c.next((f) => f.type === 'session.status' && f.data.status === 'active');
      expect(st.data).toMatchObject({ session_id: s.sessionId, session_context: s.context, previous: 'waiting_for_doctor' });
    }
  });

  it('reaction.added / reaction.removed, read and typing events', async () => {
    const m = await sent(t, s.patient, s.context, { body: 'react to me' });
    const url = `/api/v2/sessions/${s.context}/messages/${m.id}/reactions`;
    await t.app.inject({ method: 'POST', url, headers: await t.auth(s.doctor), payload: { reaction: '👍' } });
    expect((await patientWs.next((f) => f.type === 'reaction.added')).data).toMatchObject({
      message_id: m.id,
      user_id: s.doctor.id,
      reaction: '👍',
      session_context: s.context,
    });
    await t.app.inject({ method: 'DELETE', url: `${url}/${encodeURIComponent('👍')}`, headers: await t.auth(s.doctor) });
    expect((await patientWs.next((f) => f.type === 'reaction.removed')).data).toMatchObject({ message_id: m.id, reaction: '👍' });

    await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/read`,
      headers: await t.auth(s.doctor),
      payload: { message_id: m.id },
    });
    expect((await patientWs.next((f) => f.type === 'read')).data).toMatchObject({ user_id: s.doctor.id, last_read_message_id: m.id });

    // Typing over the socket itself: acked, relayed, throttled.
    const ack = await patientWs.request({ type: 'typing', session_context: s.context, typing: true });
    expect(ack).toMatchObject({ type: 'ack', of: 'typing', typing: true, throttled: false });
    const ev = await doctorWs.next((f) => f.type === 'typing' && f.data.typing === true);
    expect(ev.data).toMatchObject({ user_id: s.patient.id, user_name: s.patient.name, session_context: s.context });
    expect(Date.parse(ev.data.expires_at)).toBeGreaterThan(Date.now());
    expect((await patientWs.request({ type: 'typing', session_context: s.context, typing: true })).throttled).toBe(true);
    await patientWs.request({ type: 'typing', session_context: s.context, typing: false });
    expect((await doctorWs.next((f) => f.type === 'typing' && f.data.typing === false)).data.user_id).toBe(s.patient.id);
  });

  it('unsubscribe stops session events; ending the session is announced', async () => {
    const extra = await connect(t.app, s.patient);
    await extra.request({ type: 'subscribe', session_context: s.context });
    expect(await extra.request({ type: 'unsubscribe', session_context: s.context })).toMatchObject({
      type: 'unsubscribed',
      session_id: s.sessionId,
    });
    await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/end`, headers: await t.auth(s.patient) });
    expect((await doctorWs.next((f) => f.type === 'session.status' && f.data.status === 'ended')).data.session_id).toBe(s.sessionId);
    expect(await extra.never((f) => f.type === 'session.status')).toBe(true);
  });

  it('notifications reach the addressed user on any connection, subscribed or not', async () => {
    const a = await t.newAppointment({ appointment_type: 'text' });
    await t.giveCredits(a.patient, { text: 1 });
    const doc = await connect(t.app, a.doctor);
    await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${a.id}/start-session`, headers: await t.auth(a.patient) });
    const n = await doc.next((f) => f.type === 'notification');
    expect(n.data).toMatchObject({ kind: 'session.started' });
  });
});

describe('call signalling', () => {
  it('relays offer / answer / ice to the other participant only, from the authenticated sender', async () => {
    const s = await startSession(t, { type: 'video' });
    const p = await connect(t.app, s.patient);
    const d = await connect(t.app, s.doctor);
    const p2 = await connect(t.app, s.patient); // the patient's second device
    await p.request({ type: 'subscribe', session_context: s.context });
    await d.request({ type: 'subscribe', session_context: s.context });

    const offer = { type: 'offer', sdp: 'v=0\r\no=- 46117317 2 IN IP4 127.0.0.1\r\n' };
    const ack = await p.request({ type: 'call.signal', session_context: s.context, signal: offer });
    expect(ack, JSON.stringify(ack)).toMatchObject({ type: 'ack', of: 'call.signal' });
    const got = await d.next((f) => f.type === 'call.signal');
    expect(got.data).toEqual({ session_id: s.sessionId, session_context: s.context, from_user_id: s.patient.id, signal: offer });
    expect(await p.never((f) => f.type === 'call.signal')).toBe(true);
    expect(await p2.never((f) => f.type === 'call.signal', 100)).toBe(true);

    await d.request({ type: 'call.signal', session_context: s.context, signal: { type: 'answer', sdp: 'v=0\r\n' } });
    await d.request({
      type: 'call.signal',
      session_context: s.context,
      signal: { type: 'ice', candidate: 'candidate:1 1 UDP 2122252543 192.168.1.2 54321 typ host', sdpMid: '0', sdpMLineIndex: 0 },
    });
    expect((await p.next((f) => f.type === 'call.signal' && f.data.signal.type === 'answer')).data.from_user_id).toBe(s.doctor.id);
    expect((await p.next((f) => f.type === 'call.signal' && f.data.signal.type === 'ice')).data.signal.sdpMLineIndex).toBe(0);
    // The second device of the patient receives the doctor's signals too (addressed to the user).
    expect((await p2.next((f) => f.type === 'call.signal' && f.data.signal.type === 'answer')).data.from_user_id).toBe(s.doctor.id);

    // No spoofing (unknown fields are refused), no strangers, no text sessions, no ended calls.
    expect(await p.request({ type: 'call.signal', session_context: s.context, signal: offer, from_user_id: s.doctor.id })).toMatchObject({
      type: 'error',
      error_code: 'VALIDATION_FAILED',
    });
    const stranger = await connect(t.app, await t.newDoctor());
    expect(await stranger.request({ type: 'call.signal', session_context: s.context, signal: offer })).toMatchObject({
      error_code: 'FORBIDDEN',
    });
    const admin = await connect(t.app, await t.newAdmin());
    expect(await admin.request({ type: 'call.signal', session_context: s.context, signal: offer })).toMatchObject({
      error_code: 'FORBIDDEN',
    });
    const text = await startSession(t);
    const tp = await connect(t.app, text.patient);
    expect(await tp.request({ type: 'call.signal', session_context: text.context, signal: offer })).toMatchObject({
      error_code: 'VALIDATION_FAILED',
    });
    await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${s.context}/end`, headers: await t.auth(s.doctor) });
    expect(await p.request({ type: 'call.signal', session_context: s.context, signal: offer })).toMatchObject({
      error_code: 'SESSION_NOT_ACTIVE',
    });
  });
});

/** The `websocket_connections` gauge (all apps of this file share one context). */
const openConnections = async () => (await t.ctx.metrics.realtime.connections.get()).values[0]?.value ?? 0;

describe('limits (a gateway with short timings)', () => {
  let mini: FastifyInstance;
  beforeAll(async () => {
    mini = Fastify({ loggerInstance: t.ctx.log }) as unknown as FastifyInstance;
    await mini.register(
      fp(
        async (i) => {
          i.decorate('ctx', t.ctx);
        },
        { name: 'context' },
      ),
    );
    mini.addSchema(Problem);
    await mini.register(errorsPlugin);
    await mini.register(authPlugin);
    await mini.register(chatRoutes);
    await mini.register(realtimeGateway, { heartbeatMs: 150, maxBufferedBytes: 256 * 1024, maxMessagesPerSecond: 5 });
    await mini.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => mini?.close());

  it('terminates a connection that stops answering pings', async () => {
    const c = await connect(mini, await t.newPatient());
    const open = await openConnections();
    // Stop reading: the client no longer sees pings, so it never pongs.
    const raw = (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    raw.pause();
    await expect.poll(() => openConnections(), { timeout: 5_000 }).toBe(open - 1);
    raw.resume();
    expect((await c.closed).code).toBe(1006);
  });

  it('a live client survives many heartbeats', async () => {
    const c = await connect(mini, await t.newPatient());
    await new Promise((r) => setTimeout(r, 700));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
  });

  it('cuts off a slow consumer whose unsent buffer exceeds the limit', async () => {
    const user = await t.newPatient();
    const c = await connect(mini, user);
    const open = await openConnections();
    const raw = (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    raw.pause();
    const payload = { id: 1, kind: 'bulk', payload: 'x'.repeat(16 * 1024) };
    // Up to 64 MiB in total: far more than the socket buffers plus the 256 KiB limit.
    for (let i = 0; i < 4000 && (await openConnections()) === open; i++) {
      await t.ctx.bus.publish({ type: 'notification', userIds: [user.id], payload });
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await expect.poll(() => openConnections(), { timeout: 5_000 }).toBe(open - 1);
    raw.resume();
    expect((await c.closed).code).toBe(1006);
  });

  it('answers RATE_LIMITED past the per-second message budget', async () => {
    const c = await connect(mini, await t.newPatient());
    for (let i = 0; i < 7; i++) c.ws.send(JSON.stringify({ type: 'ping' }));
    expect((await c.next((f) => f.type === 'error')).error_code).toBe('RATE_LIMITED');
  });
});

describe.skipIf(!isPostgres)('two API processes on one PostgreSQL', () => {
  let a: { ctx: AppContext; app: FastifyInstance };
  let b: { ctx: AppContext; app: FastifyInstance };

  const process = async (role: string) => {
    const config = loadConfig({ DATABASE_URL: t.database.databaseUrl!, JWT_SECRET: TEST_JWT_SECRET, DB_POOL_SIZE: '5' });
    const ctx = await createContext(config, {
      role,
      logger: pino({ level: 'silent' }),
      flags: new FlagService(() => ({})),
      migrate: false,
      bus: createBusFor,
    });
    const app = await buildApp(ctx);
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { ctx, app };
  };

  beforeAll(async () => {
    a = await process('api-a');
    b = await process('api-b');
    expect(a.ctx.bus).toBeInstanceOf(PgBus);
  });
  afterAll(async () => {
    for (const p of [a, b]) {
      if (!p) continue;
      await p.app.close();
      await closeContext(p.ctx);
    }
  });

  it('a message sent through A reaches a subscriber on B; status and typing too', async () => {
    const s = await startSession(t);
    const onB = await connect(b.app, s.doctor);
    await onB.request({ type: 'subscribe', session_context: s.context });
    const res = await a.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers: await t.auth(s.patient),
      payload: { client_message_id: 'x-proc', type: 'text', body: 'sent through A' },
    });
    expect(res.statusCode).toBe(201);
    const ev = await onB.next((f) => f.type === 'message.created');
    expect(ev.data).toMatchObject({ id: res.json().data.id, body: 'sent through A', session_context: s.context });

    const onA = await connect(a.app, s.patient);
    await onA.request({ type: 'subscribe', session_context: s.context });
    await b.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers: await t.auth(s.doctor),
      payload: { client_message_id: 'y-proc', type: 'text', body: 'answer via B' },
    });
    expect((await onA.next((f) => f.type === 'message.created')).data.body).toBe('answer via B');
    expect((await onA.next((f) => f.type === 'session.status')).data.status).toBe('active');

    await a.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/typing`,
      headers: await t.auth(s.patient),
      payload: { typing: true },
    });
    expect((await onB.next((f) => f.type === 'typing')).data.user_id).toBe(s.patient.id);
    // B's typing view (legacy typing_users) knows about the typist on A.
    const legacy = await b.app.inject({ method: 'POST', url: `/api/v2/chat/${s.context}/typing/start`, headers: await t.auth(s.doctor) });
    expect(
      legacy
        .json()
        .data.typing_users.map((u: { user_id: number }) => u.user_id)
        .sort(),
    ).toEqual([s.patient.id, s.doctor.id].sort());
  });

  it('events larger than one NOTIFY payload (a big SDP offer) arrive whole', async () => {
    const s = await startSession(t, { type: 'voice' });
    const onB = await connect(b.app, s.doctor);
    const onA = await connect(a.app, s.patient);
    const sdp = Array.from({ length: 600 }, (_, i) => `a=candidate:${i} 1 UDP 2122252543 10.0.0.${i % 250} ${40000 + i} typ host — ✓`)
      .join('\r\n')
      .slice(0, 31_000);
    expect(Buffer.byteLength(sdp)).toBeGreaterThan(20_000);
    await onA.request({ type: 'call.signal', session_context: s.context, signal: { type: 'offer', sdp } });
    const got = await onB.next((f) => f.type === 'call.signal');
    expect(got.data.signal.sdp).toBe(sdp);
    expect(got.data.from_user_id).toBe(s.patient.id);
  });

  it('the LISTEN connection comes back after being killed', async () => {
    const bus = b.ctx.bus as PgBus;
    const { sql } = await import('kysely');
    expect(bus.listenerPid).toEqual(expect.any(Number));
    await sql`select pg_terminate_backend(${bus.listenerPid})`.execute(a.ctx.db);
    await expect.poll(() => bus.listening, { timeout: 5_000 }).toBe(false);
    await expect.poll(() => bus.listening, { timeout: 10_000 }).toBe(true);
    const s = await startSession(t);
    const onB = await connect(b.app, s.patient);
    await onB.request({ type: 'subscribe', session_context: s.context });
    await a.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${s.context}/messages`,
      headers: await t.auth(s.patient),
      payload: { client_message_id: 'after-reconnect', type: 'text', body: 'still here' },
    });
    expect((await onB.next((f) => f.type === 'message.created')).data.body).toBe('still here');
  });

  it('a killed LISTEN backend: connected clients get resync, and re-reading misses nothing', async () => {
    const bus = b.ctx.bus as PgBus;
    const s = await startSession(t);
    const onB = await connect(b.app, s.doctor);
    await onB.request({ type: 'subscribe', session_context: s.context });
    const other = await connect(b.app, s.patient); // not subscribed to anything: resync reaches every connection
    const headers = await t.auth(s.patient);
    const post = (id: string, body: string) =>
      a.app.inject({
        method: 'POST',
        url: `/api/v2/sessions/${s.context}/messages`,
        headers,
        payload: { client_message_id: id, type: 'text', body },
      });
    const first = await post('before-kill', 'seen live');
    expect(first.statusCode).toBe(201);
    const lastSeen = (await onB.next((f) => f.type === 'message.created')).data.id as number;

    const { sql } = await import('kysely');
    // The LISTEN backend, as an operator finds it: application_name sessiongate-<role>, waiting on ClientRead.
    const backend = await sql<{ pid: number }>`select pid from pg_stat_activity
        where datname = current_database() and application_name = 'sessiongate-api-b' and pid = ${bus.listenerPid}`.execute(a.ctx.db);
    expect(backend.rows).toHaveLength(1);
    await sql`select pg_terminate_backend(${backend.rows[0]!.pid})`.execute(a.ctx.db);
    await expect.poll(() => bus.listening, { timeout: 5_000 }).toBe(false);
    // Written while B may not be listening: B's clients may never see it live.
    const during = await post('during-outage', 'maybe missed');
    expect(during.statusCode).toBe(201);

    const resync = await onB.next((f) => f.type === 'resync', 15_000);
    expect(resync.data).toMatchObject({ reason: 'event_bus_reconnected', since: expect.any(String) });
    expect((await other.next((f) => f.type === 'resync', 5_000)).data.reason).toBe('event_bus_reconnected');
    // The client re-reads from where it was: the message written during the outage is there.
    const reread = await b.app.inject({
      method: 'GET',
      url: `/api/v2/sessions/${s.context}/messages?after=${lastSeen}`,
      headers: await t.auth(s.doctor),
    });
    expect(reread.statusCode).toBe(200);
    expect(reread.json().data.messages.map((m: { body: string }) => m.body)).toContain('maybe missed');
  });

  it('a LISTEN connection that stops answering (a hung peer) is detected by the self-check and replaced, with a resync', async () => {
    const config = loadConfig({ DATABASE_URL: t.database.databaseUrl!, JWT_SECRET: TEST_JWT_SECRET, DB_POOL_SIZE: '3' });
    const ctx = await createContext(config, {
      role: 'api-hung',
      logger: pino({ level: 'silent' }),
      flags: new FlagService(() => ({})),
      migrate: false,
      bus: (database, log) => PgBus.start(database.pool!, log, { selfCheckMs: 300, selfCheckTimeoutMs: 500 }),
    });
    const bus = ctx.bus as PgBus;
    const events: string[] = [];
    bus.subscribe((e) => events.push(e.type));
    const pid = bus.listenerPid!;
    expect(pid).toEqual(expect.any(Number));
    try {
      // A stopped backend keeps its socket open and answers nothing: no error, no FIN.
      globalThis.process.kill(pid, 'SIGSTOP');
      await expect.poll(() => bus.reconnects, { timeout: 10_000 }).toBe(1);
      expect(bus.listening).toBe(true);
      expect(events).toContain('resync');
    } finally {
      globalThis.process.kill(pid, 'SIGCONT');
      await closeContext(ctx);
    }
  });
});
