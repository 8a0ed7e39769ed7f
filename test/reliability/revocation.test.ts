/**
 * Revocation across processes, the way it is deployed: two `sessiongate serve` processes on one
 * PostgreSQL. A user whose socket is open on API B is deactivated through API A (HTTP) or the CLI,
 * or deleted in SQL: the socket on B — sessiongate's or the original app's — is closed within
 * seconds and receives nothing more.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/index.js';
import type { Role } from '../../src/db/types.js';
import { signToken } from '../../src/lib/auth.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { cloneTestDatabase, isPostgres, type TestDatabase } from '../helpers/db.js';
import { freePort, runCli, spawnCli, waitForStatus, type Spawned } from '../helpers/process.js';
import { WsClient } from '../helpers/ws-client.js';

describe.skipIf(!isPostgres)('revocation across API processes', () => {
  let tdb: TestDatabase;
  let database: Database;
  let env: Record<string, string>;
  const apis: { port: number; proc: Spawned }[] = [];
  const clients: WsClient[] = [];

  beforeAll(async () => {
    tdb = await cloneTestDatabase();
    // The periodic re-check is left at a minute, so a close within seconds is the signal's doing
    // (the re-check itself is tested in test/integration/abuse.test.ts).
    env = {
      DATABASE_URL: tdb.databaseUrl!,
      JWT_SECRET: TEST_JWT_SECRET,
      DB_POOL_SIZE: '4',
      LOG_LEVEL: 'warn',
      WS_ACCESS_RECHECK_SECONDS: '60',
    };
    database = await openDatabase({ databaseUrl: tdb.databaseUrl, dataDir: '' });
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const proc = spawnCli(['serve'], { ...env, PORT: String(port) });
      if (!(await waitForStatus(`http://127.0.0.1:${port}/health/ready`, 200, 60_000)))
        throw new Error(`API did not start: ${proc.stderr()}`);
      apis.push({ port, proc });
    }
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.ws.terminate();
    for (const a of apis) a.proc.child.kill('SIGKILL');
    await database?.close();
    await tdb?.drop();
  });

  const token = (u: { id: number; role: Role }) => signToken(TEST_JWT_SECRET, { sub: u.id, role: u.role }, 3600);
  const http = async (api: number, user: { id: number; role: Role }, method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${apis[api]!.port}${path}`, {
      method,
      headers: { authorization: `Bearer ${await token(user)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { data?: any } };
  };
  const socketOnB = async (user: { id: number; role: Role }) => {
    const c = await WsClient.open(`ws://127.0.0.1:${apis[1]!.port}/api/v2/ws`, ['bearer', await token(user)]);
    clients.push(c);
    return c;
  };
  /** A live text session between a new patient and a new doctor, started through API A. */
  const newSession = async () => {
    const db = database.db;
    const [patient, doctor] = await db
      .insertInto('users')
      .values([
        { role: 'patient', name: 'P' },
        { role: 'doctor', name: 'D' },
      ])
      .returning(['id', 'role'])
      .execute();
    const plan = await db
      .insertInto('plans')
      .values({ name: `p-${patient!.id}`, text_credits: 5, validity_days: 30 })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db
      .insertInto('subscriptions')
      .values({
        patient_id: patient!.id,
        plan_id: plan.id,
        payment_reference: `r-${patient!.id}`,
        text_credits: 5,
        text_remaining: 5,
        voice_credits: 0,
        video_credits: 0,
        voice_remaining: 0,
        video_remaining: 0,
        expires_at: new Date(Date.now() + 86_400_000),
      })
      .execute();
    const a = await db
      .insertInto('appointments')
      .values({
        patient_id: patient!.id,
        doctor_id: doctor!.id,
        appointment_type: 'text',
        status: 'confirmed',
        scheduled_at: new Date(Date.now() - 60_000),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const started = await http(0, patient!, 'POST', `/api/v2/appointments/${a.id}/start-session`);
    expect(started.status).toBeLessThan(300);
    return { patient: patient!, doctor: doctor!, context: started.body.data.session_context as string };
  };
  const sendVia = (api: number, user: { id: number; role: Role }, context: string, body: string) =>
    http(api, user, 'POST', `/api/v2/sessions/${context}/messages`, { client_message_id: `${body}-${Math.random()}`, type: 'text', body });

  it('deactivated through API A (HTTP): the socket on API B is closed within seconds and gets nothing more', async () => {
    const s = await newSession();
    const [admin] = await database.db.insertInto('users').values({ role: 'admin', name: 'A' }).returning(['id', 'role']).execute();
    const sock = await socketOnB(s.patient);
    expect((await sock.request({ type: 'subscribe', session_context: s.context })).type).toBe('subscribed');
    expect((await sendVia(0, s.doctor, s.context, 'before')).status).toBe(201);
    await sock.next((f) => f.type === 'message.created' && f.data.body === 'before');

    const started = Date.now();
    expect((await http(0, admin!, 'POST', `/api/v2/admin/users/${s.patient.id}/deactivate`)).status).toBe(200);
    const closed = await sock.closedWithin(5_000);
    expect(closed.code).toBe(4003);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await sendVia(0, s.doctor, s.context, 'after')).status).toBe(201);
    expect(sock.frames.some((f) => f.type === 'message.created' && f.data.body === 'after')).toBe(false);
    // And every door of both processes refuses the token.
    expect((await http(1, s.patient, 'GET', '/api/v2/me')).status).toBe(401);
    await expect(socketOnB(s.patient)).rejects.toThrow('HTTP 401');
  });

  it("the original app's chat socket on API B: closed when the user is deactivated through API A, nothing more delivered", async () => {
    const s = await newSession();
    const [admin] = await database.db.insertInto('users').values({ role: 'admin', name: 'A' }).returning(['id', 'role']).execute();
    const sessionId = s.context.split(':')[1]!;
    const qs = new URLSearchParams({
      appointmentId: `text_session_${sessionId}`,
      userId: String(s.patient.id),
      authToken: await token(s.patient),
    });
    const sock = await WsClient.open(
      `ws://127.0.0.1:${apis[1]!.port}/chat-signaling?${qs}`,
      ['no-compression'],
      (f) => f.type === 'connection-established',
    );
    clients.push(sock);
    expect((await sendVia(0, s.doctor, s.context, 'before')).status).toBe(201);
    await sock.next((f) => f.type === 'chat-message' && f.message.message === 'before');

    const started = Date.now();
    expect((await http(0, admin!, 'POST', `/api/v2/admin/users/${s.patient.id}/deactivate`)).status).toBe(200);
    expect((await sock.closedWithin(5_000)).code).toBe(4003);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await sendVia(0, s.doctor, s.context, 'after')).status).toBe(201);
    expect(sock.frames.some((f) => f.type === 'chat-message' && f.message.message === 'after')).toBe(false);
  });

  it('deactivated by `sessiongate users:deactivate` (a third process): the socket on API B is closed', async () => {
    const s = await newSession();
    const sock = await socketOnB(s.doctor);
    expect((await sock.request({ type: 'subscribe', session_context: s.context })).type).toBe('subscribed');
    const r = await runCli(['users:deactivate', '--user', String(s.doctor.id), '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: s.doctor.id, deactivated_at: expect.any(String) });
    expect((await sock.closedWithin(5_000)).code).toBe(4003);
  });

  it('deleted in SQL (no signal): the socket on API B is closed at its next message, which is not answered', async () => {
    const s = await newSession();
    const [admin] = await database.db
      .insertInto('users')
      .values({ role: 'admin', name: 'Deleted admin' })
      .returning(['id', 'role'])
      .execute();
    const sock = await socketOnB(admin!);
    await database.db.deleteFrom('users').where('id', '=', admin!.id).execute();
    sock.ws.send(JSON.stringify({ type: 'subscribe', session_context: s.context }));
    expect((await sock.closedWithin(5_000)).code).toBe(4003);
    expect((await sendVia(0, s.patient, s.context, 'private')).status).toBe(201);
    expect(sock.frames.some((f) => f.type === 'subscribed' || f.type === 'message.created')).toBe(false);
  });

  it('rate limits hold across processes: the chat burst is shared by API A and API B', async () => {
    const s = await newSession();
    const codes: number[] = [];
    // Default burst: 20 sends per window, whichever process serves them.
    for (let i = 0; i < 21; i++) codes.push((await sendVia(i % 2, s.patient, s.context, `m${i}`)).status);
    expect(codes.slice(0, 20).every((c) => c === 201)).toBe(true);
    expect(codes[20]).toBe(429);
  });
});
