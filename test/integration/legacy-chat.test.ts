/**
 * Legacy appointment-addressed chat behind the SessionContextGuard: the full decision
 * table for all eight operations, the error bodies, log lines, metrics and guard events; session
 * contexts in the path; `direct_session_*`; the old clients' request and response shapes; and
 * pre-session chat carried into the session.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FlagSet } from '../../src/config/flag-values.js';
import type { User } from '../../src/db/types.js';
import { CHAT_OPERATIONS, type ChatOperation } from '../../src/modules/guard/decision.js';
import { rolloutStatus } from '../../src/modules/ops/rollout.js';
import { isPostgres } from '../helpers/db.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { metricValue, sent, startSession } from './chat-helpers.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

const FLAGS_OFF: Partial<FlagSet> = { ENFORCE_SESSION_GATED_CHAT: false, ALLOW_LEGACY_APPOINTMENT_CHAT: false };
beforeEach(() => {
  t.flags.set(FLAGS_OFF);
});

interface Conversation {
  appointmentId: number;
  patient: User;
  doctor: User;
  sessionId: number | null;
  context: string | null;
  messageId: number;
}

/** An appointment with a started text session (and one message in it), or without a session (one pre-session message). */
async function conversation(withSession: boolean): Promise<Conversation> {
  if (withSession) {
    const s = await startSession(t);
    const m = await sent(t, s.patient, s.context, { body: 'seed' });
    return {
      appointmentId: s.appointmentId,
      patient: s.patient,
      doctor: s.doctor,
      sessionId: s.sessionId,
      context: s.context,
      messageId: m.id,
    };
  }
  const a = await t.newAppointment({ scheduled_at: new Date(Date.now() + 3_600_000) });
  const m = await t.ctx.db
    .insertInto('messages')
    .values({ appointment_id: a.id, sender_id: a.doctor.id, type: 'text', body: 'pre-session seed' })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { appointmentId: a.id, patient: a.patient, doctor: a.doctor, sessionId: null, context: null, messageId: m.id };
}

/** The request an old client makes for each operation, addressed by `id`. */
function legacyRequest(op: ChatOperation, id: string | number, messageId: number) {
  const base = `/api/v2/chat/${id}`;
  switch (op) {
    case 'sendMessage':
      return {
        method: 'POST' as const,
        url: `${base}/messages`,
        payload: { message: 'hello from the old app', message_type: 'text', temp_id: `tmp-${Math.random()}` },
      };
    case 'getMessages':
      return { method: 'GET' as const, url: `${base}/messages` };
    case 'addReaction':
      return { method: 'POST' as const, url: `${base}/messages/${messageId}/reactions`, payload: { reaction: '👍' } };
    case 'removeReaction':
      return { method: 'DELETE' as const, url: `${base}/messages/${messageId}/reactions?reaction=${encodeURIComponent('👍')}` };
    case 'startTyping':
      return { method: 'POST' as const, url: `${base}/typing/start` };
    case 'stopTyping':
      return { method: 'POST' as const, url: `${base}/typing/stop` };
    case 'replyToMessage':
      return { method: 'POST' as const, url: `${base}/messages/${messageId}/reply`, payload: { message: 'a reply', message_type: 'text' } };
    case 'markAsRead':
      return {
        method: 'POST' as const,
        url: `${base}/mark-read`,
        payload: { user_id: 999_999, timestamp: new Date(Date.now() + 60_000).toISOString() },
      };
  }
}

/** Every guard decision on the appointment, as rollout:status reads them. */
const guardEvents = (appointmentId: number) =>
  t.ctx.db.selectFrom('guard_event_log').selectAll().where('appointment_id', '=', appointmentId).orderBy('id').execute();

const logLines = (msg: string, appointmentId: number, op: string) =>
  t.logs.filter((l) => l['msg'] === msg && l['appointment_id'] === appointmentId && l['operation'] === op);

const BLOCKED = 'SessionContextGuard: Chat operation blocked';
const ALLOWED = 'SessionContextGuard: Chat operation allowed (legacy)';

describe('SessionContextGuard decision table × the eight operations', () => {
  const combos: [boolean, boolean][] = [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ];
  for (const withSession of [true, false]) {
    for (const [enforce, allow] of combos) {
      for (const op of CHAT_OPERATIONS) {
        const expectOutcome = withSession ? (enforce ? 'blocked' : 'would_block') : allow ? 'allowed_legacy' : 'not_ready';
        it(`${op}: session=${withSession ? 'set' : 'null'} ENFORCE=${enforce} ALLOW_LEGACY=${allow} → ${expectOutcome}`, async () => {
          const c = await conversation(withSession);
          t.flags.set({ ENFORCE_SESSION_GATED_CHAT: enforce, ALLOW_LEGACY_APPOINTMENT_CHAT: allow });
          const opsBefore = await metricValue(t, 'chat_operations_total', { operation: op, path: 'legacy' });
          const blockedBefore = {
            true: await metricValue(t, 'chat_blocked_session_context_required_total', { operation: op, enforced: 'true' }),
            false: await metricValue(t, 'chat_blocked_session_context_required_total', { operation: op, enforced: 'false' }),
          };
          const req = legacyRequest(op, c.appointmentId, c.messageId);
          const res = await t.app.inject({ ...req, headers: await t.auth(c.patient) });

          expect(await metricValue(t, 'chat_operations_total', { operation: op, path: 'legacy' })).toBe(opsBefore + 1);
          const events = await guardEvents(c.appointmentId);
          expect(events).toHaveLength(1);
          expect(events[0]).toMatchObject({
            guard: 'chat',
            operation: op,
            outcome: expectOutcome,
            appointment_id: c.appointmentId,
            session_id: c.sessionId,
            user_id: c.patient.id,
            enforced: expectOutcome === 'blocked' || expectOutcome === 'not_ready',
          });

          switch (expectOutcome) {
            case 'blocked':
              expect(res.statusCode).toBe(400);
              expect(res.json()).toMatchObject({
                success: false,
                error_code: 'SESSION_CONTEXT_REQUIRED',
                session_id: c.sessionId,
                session_context: c.context,
                appointment_id: c.appointmentId,
              });
              expect(logLines(BLOCKED, c.appointmentId, op)).toHaveLength(1);
              expect(logLines(BLOCKED, c.appointmentId, op)[0]).toMatchObject({ session_id: c.sessionId, level: 40 });
              expect(await metricValue(t, 'chat_blocked_session_context_required_total', { operation: op, enforced: 'true' })).toBe(
                blockedBefore.true + 1,
              );
              break;
            case 'would_block':
              expect(res.statusCode, res.body).toBe(200);
              expect(res.json().success).toBe(true);
              expect(logLines(ALLOWED, c.appointmentId, op)).toHaveLength(1);
              expect(logLines(ALLOWED, c.appointmentId, op)[0]).toMatchObject({ session_id: c.sessionId, outcome: 'would_block' });
              expect(await metricValue(t, 'chat_blocked_session_context_required_total', { operation: op, enforced: 'false' })).toBe(
                blockedBefore.false + 1,
              );
              break;
            case 'not_ready':
              expect(res.statusCode).toBe(403);
              expect(res.json()).toMatchObject({
                success: false,
                error_code: 'SESSION_NOT_READY',
                appointment_id: c.appointmentId,
                poll_url: `/api/v2/appointments/${c.appointmentId}/session`,
              });
              expect(res.json().message).toContain(`/api/v2/appointments/${c.appointmentId}/session`);
              expect(logLines(BLOCKED, c.appointmentId, op)).toHaveLength(1);
              break;
            case 'allowed_legacy':
              expect(res.statusCode, res.body).toBe(200);
              expect(logLines(ALLOWED, c.appointmentId, op)).toHaveLength(1);
              break;
          }
          if (expectOutcome === 'not_ready' || expectOutcome === 'allowed_legacy') {
            // Neither is a "session context required" event.
            expect(await metricValue(t, 'chat_blocked_session_context_required_total', { operation: op, enforced: 'true' })).toBe(
              blockedBefore.true,
            );
            expect(await metricValue(t, 'chat_blocked_session_context_required_total', { operation: op, enforced: 'false' })).toBe(
              blockedBefore.false,
            );
          }

          // Writes land where the decision says: in the session, in the appointment's pre-session chat, or nowhere.
          if (op === 'sendMessage' || op === 'replyToMessage') {
            const rows = await t.ctx.db
              .selectFrom('messages')
              .select(['session_id', 'appointment_id'])
              .where((eb) =>
                eb.or([eb('appointment_id', '=', c.appointmentId), c.sessionId ? eb('session_id', '=', c.sessionId) : eb.val(false)]),
              )
              .execute();
            const expectedCount = expectOutcome === 'blocked' || expectOutcome === 'not_ready' ? 1 : 2;
            expect(rows).toHaveLength(expectedCount);
            if (expectOutcome === 'would_block') expect(rows.every((r) => r.session_id === c.sessionId)).toBe(true);
            if (expectOutcome === 'allowed_legacy')
              expect(rows.every((r) => r.session_id === null && r.appointment_id === c.appointmentId)).toBe(true);
          }
        });
      }
    }
  }
});

describe('what the path parameter names', () => {
  it('a session context (canonical or legacy text_session_N) is served as that session, without a guard event', async () => {
    const s = await startSession(t);
    for (const id of [s.context, `text_session_${s.sessionId}`]) {
      const res = await t.app.inject({
        method: 'POST',
        url: `/api/v2/chat/${id}/messages`,
        headers: await t.auth(s.patient),
        payload: { message: 'via context', temp_id: `ctx-${id}` },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().data).toMatchObject({ session_id: s.sessionId, session_context: s.context, message: 'via context' });
    }
    t.flags.set({ ENFORCE_SESSION_GATED_CHAT: true });
    const list = await t.app.inject({ url: `/api/v2/chat/text_session_${s.sessionId}/messages`, headers: await t.auth(s.doctor) });
    expect(list.statusCode).toBe(200);
    expect(list.json().data).toHaveLength(2);
    expect(await guardEvents(s.appointmentId)).toHaveLength(0);
    // Kind mismatch and unknown ids are 404; strangers 403.
    expect(
      (await t.app.inject({ url: `/api/v2/chat/call_session:${s.sessionId}/messages`, headers: await t.auth(s.patient) })).statusCode,
    ).toBe(404);
    expect((await t.app.inject({ url: `/api/v2/chat/text_session_987654321/messages`, headers: await t.auth(s.patient) })).statusCode).toBe(
      404,
    );
    expect(
      (await t.app.inject({ url: `/api/v2/chat/${s.context}/messages`, headers: await t.auth(await t.newPatient()) })).statusCode,
    ).toBe(403);
  });

  it('direct_session_* is refused with 400 SESSION_CONTEXT_REQUIRED for every operation, and recorded', async () => {
    const patient = await t.newPatient();
    for (const op of CHAT_OPERATIONS) {
      const res = await t.app.inject({ ...legacyRequest(op, 'direct_session_1700000000_abc', 1), headers: await t.auth(patient) });
      expect(res.statusCode, op).toBe(400);
      expect(res.json().error_code).toBe('SESSION_CONTEXT_REQUIRED');
    }
    const rows = await t.ctx.db.selectFrom('guard_event_log').selectAll().where('user_id', '=', patient.id).execute();
    expect(rows.map((r) => r.operation).sort()).toEqual([...CHAT_OPERATIONS].sort());
    expect(rows.every((r) => r.outcome === 'blocked' && r.appointment_id === null)).toBe(true);
  });

  it('malformed ids are 400, unknown appointments 404, strangers 403 FORBIDDEN — before any guard decision', async () => {
    const c = await conversation(true);
    const headers = await t.auth(c.patient);
    for (const bad of ['12abc', 'text_session:0', '%20', 'text-session-1']) {
      expect((await t.app.inject({ url: `/api/v2/chat/${bad}/messages`, headers })).statusCode, bad).toBe(400);
    }
    expect((await t.app.inject({ url: `/api/v2/chat/987654321/messages`, headers })).statusCode).toBe(404);
    for (const stranger of [await t.newPatient(), await t.newDoctor()]) {
      for (const op of CHAT_OPERATIONS) {
        const res = await t.app.inject({ ...legacyRequest(op, c.appointmentId, c.messageId), headers: await t.auth(stranger) });
        expect(res.statusCode, `${op} ${stranger.role}`).toBe(403);
        expect(res.json().error_code).toBe('FORBIDDEN');
      }
    }
    for (const op of CHAT_OPERATIONS) {
      expect((await t.app.inject(legacyRequest(op, c.appointmentId, c.messageId))).statusCode, op).toBe(401);
    }
    expect(await guardEvents(c.appointmentId)).toHaveLength(0);
  });

  it('admins may read (getMessages) and nothing else', async () => {
    const c = await conversation(true);
    const admin = await t.newAdmin();
    for (const op of CHAT_OPERATIONS) {
      const res = await t.app.inject({ ...legacyRequest(op, c.appointmentId, c.messageId), headers: await t.auth(admin) });
      expect(res.statusCode, op).toBe(op === 'getMessages' ? 200 : 403);
    }
  });
});

describe('the old clients’ shapes', () => {
  it('send: message / message_type / temp_id / media_url in, {success, data:{id, sender_id, sender_name, message, message_type, media_url, temp_id, created_at}} out; temp_id is the idempotency key', async () => {
    const s = await startSession(t);
    await sent(t, s.doctor, s.context);
    const headers = await t.auth(s.patient);
    const post = (payload: object) => t.app.inject({ method: 'POST', url: `/api/v2/chat/${s.appointmentId}/messages`, headers, payload });
    const a = await post({ message: 'Line 1\nLine 2', message_type: 'text', temp_id: 1716900000123 });
    expect(a.statusCode, a.body).toBe(200);
    const m = a.json().data;
    expect(m).toMatchObject({
      sender_id: s.patient.id,
      sender_name: s.patient.name,
      message: 'Line 1\nLine 2',
      message_type: 'text',
      media_url: null,
      temp_id: '1716900000123',
    });
    expect(typeof m.id).toBe('number');
    expect(Date.parse(m.created_at)).not.toBeNaN();
    expect(m.timestamp).toBe(m.created_at);
    const retry = await post({ message: 'Line 1\nLine 2', message_type: 'text', temp_id: 1716900000123 });
    expect(retry.json().data.id).toBe(m.id);
    // An old client that sends only its own message_id gets the same protection.
    const b1 = await post({ message: 'ok', message_id: 'msg_abc' });
    const b2 = await post({ message: 'ok', message_id: 'msg_abc' });
    expect(b2.json().data.id).toBe(b1.json().data.id);
    // ... but legitimate repeats without ids are never merged.
    const c1 = await post({ message: 'yes' });
    const c2 = await post({ message: 'yes' });
    expect(c2.json().data.id).not.toBe(c1.json().data.id);
    const img = await post({ message: '[image]', message_type: 'image', media_url: 'https://cdn.example.com/chat_images/1.jpg' });
    expect(img.json().data).toMatchObject({ message_type: 'image', media_url: 'https://cdn.example.com/chat_images/1.jpg' });
    const blocked = await post({ message: 'see www.example' });
    expect(blocked.statusCode).toBe(400);
    expect(blocked.json().error_code).toBe('CONTENT_BLOCKED');
    expect((await post({ message: 'x', sender_id: 1 })).statusCode).toBe(400);

    const list = await t.app.inject({ url: `/api/v2/chat/${s.appointmentId}/messages`, headers });
    expect(list.json()).toMatchObject({ success: true });
    expect(list.json().data.map((x: { message: string }) => x.message)).toEqual(['hello', 'Line 1\nLine 2', 'ok', 'yes', 'yes', '[image]']);
  });

  it('reactions (double-wrapped), reply (with the original), typing (typing_users), mark-read (the body user_id is ignored)', async () => {
    const s = await startSession(t);
    const q = await sent(t, s.patient, s.context, { body: 'question' });
    const doctor = await t.auth(s.doctor);
    const base = `/api/v2/chat/${s.appointmentId}`;

    const add = await t.app.inject({
      method: 'POST',
      url: `${base}/messages/${q.id}/reactions`,
      headers: doctor,
      payload: { reaction: '❤️' },
    });
    expect(add.json()).toMatchObject({
      success: true,
      data: { success: true, message: 'Reaction added', reaction: { reaction: '❤️', user_id: s.doctor.id, user_name: s.doctor.name } },
    });
    const again = await t.app.inject({
      method: 'POST',
      url: `${base}/messages/${q.id}/reactions`,
      headers: doctor,
      payload: { reaction: '❤️' },
    });
    expect(again.json().data).toMatchObject({ success: true, message: 'Reaction already present' });
    const listed = (await t.app.inject({ url: `${base}/messages`, headers: doctor })).json().data[0];
    expect(listed.reactions).toEqual([expect.objectContaining({ reaction: '❤️', user_id: s.doctor.id, user_name: s.doctor.name })]);
    const del = await t.app.inject({
      method: 'DELETE',
      url: `${base}/messages/${q.id}/reactions`,
      headers: doctor,
      payload: { reaction: '❤️' },
    });
    expect(del.json().data).toMatchObject({ success: true, message: 'Reaction removed' });
    const noReaction = await t.app.inject({ method: 'DELETE', url: `${base}/messages/${q.id}/reactions`, headers: doctor });
    expect(noReaction.statusCode).toBe(400);

    const reply = await t.app.inject({
      method: 'POST',
      url: `${base}/messages/${q.id}/reply`,
      headers: doctor,
      payload: { message: 'answer', message_type: 'text' },
    });
    expect(reply.statusCode, reply.body).toBe(200);
    expect(reply.json()).toMatchObject({
      success: true,
      message: 'Reply sent successfully',
      data: {
        message: 'answer',
        reply_to_id: q.id,
        reply_to_message: 'question',
        reply_to_sender_name: s.patient.name,
        sender_name: s.doctor.name,
        read_by: [],
      },
    });
    const badReply = await t.app.inject({
      method: 'POST',
      url: `${base}/messages/987654321/reply`,
      headers: doctor,
      payload: { message: 'x', message_type: 'text' },
    });
    expect(badReply.statusCode).toBe(404);

    const typing = await t.app.inject({ method: 'POST', url: `${base}/typing/start`, headers: doctor, payload: {} });
    expect(typing.json()).toMatchObject({
      success: true,
      data: { success: true, typing_users: [{ user_id: s.doctor.id, user_name: s.doctor.name }] },
    });
    const stop = await t.app.inject({ method: 'POST', url: `${base}/typing/stop`, headers: doctor });
    expect(stop.json().data.typing_users).toEqual([]);

    // Mark-read with someone else's user_id in the body marks for the caller only.
    const mark = await t.app.inject({
      method: 'POST',
      url: `${base}/mark-read`,
      headers: doctor,
      payload: { user_id: s.patient.id, timestamp: new Date(Date.now() + 60_000).toISOString() },
    });
    expect(mark.json()).toMatchObject({ success: true, data: { success: true, marked_count: 1 } });
    const horizons = await t.ctx.db.selectFrom('read_horizons').selectAll().where('scope_key', '=', `session:${s.sessionId}`).execute();
    expect(horizons.map((h) => h.user_id)).toEqual([s.doctor.id]);
    const markAgain = await t.app.inject({ method: 'POST', url: `${base}/mark-read`, headers: doctor, payload: {} });
    expect(markAgain.json().data.marked_count).toBe(0);
    expect(
      (await t.app.inject({ method: 'POST', url: `${base}/mark-read`, headers: doctor, payload: { timestamp: 'yesterday' } })).statusCode,
    ).toBe(400);
  });
});

describe('pre-session legacy chat (ALLOW_LEGACY_APPOINTMENT_CHAT)', () => {
  it('is kept per appointment, marks legacy activity, and is carried into the session when it starts', async () => {
    t.flags.set({ ALLOW_LEGACY_APPOINTMENT_CHAT: true });
    const a = await t.newAppointment({});
    await t.giveCredits(a.patient, { text: 2 });
    const post = async (u: User, message: string) =>
      t.app.inject({
        method: 'POST',
        url: `/api/v2/chat/${a.id}/messages`,
        headers: await t.auth(u),
        payload: { message, temp_id: `pre-${message}` },
      });
    expect((await post(a.patient, 'before the session')).statusCode).toBe(200);
    expect((await post(a.doctor, 'hello early')).statusCode).toBe(200);
    const flags = await t.ctx.db
      .selectFrom('appointments')
      .select(['legacy_patient_active', 'legacy_doctor_active', 'session_id'])
      .where('id', '=', a.id)
      .executeTakeFirstOrThrow();
    expect(flags).toEqual({ legacy_patient_active: true, legacy_doctor_active: true, session_id: null });

    const start = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${a.id}/start-session`,
      headers: await t.auth(a.patient),
    });
    const context = start.json().data.session_context as string;
    const page = (await t.app.inject({ url: `/api/v2/sessions/${context}/messages`, headers: await t.auth(a.patient) })).json().data;
    expect(page.messages.map((m: { body: string }) => m.body)).toEqual(['before the session', 'hello early']);
    expect(page.messages[0]).toMatchObject({ appointment_id: a.id, session_context: context });

    // From now on the same legacy route is served by the session (would-block), history included.
    const after = await post(a.patient, 'after start');
    expect(after.json().data.session_context).toBe(context);
    const legacyList = (await t.app.inject({ url: `/api/v2/chat/${a.id}/messages`, headers: await t.auth(a.doctor) })).json().data;
    expect(legacyList.map((m: { message: string }) => m.message)).toEqual(['before the session', 'hello early', 'after start']);
    // A retry of a pre-session temp_id after the start returns the carried message.
    const retry = await post(a.patient, 'before the session');
    expect(retry.json().data.id).toBe(page.messages[0].id);
  });

  it('a pre-session send racing the session start ends up in the session either way', async () => {
    t.flags.set({ ALLOW_LEGACY_APPOINTMENT_CHAT: true });
    for (let i = 0; i < 10; i++) {
      const a = await t.newAppointment({});
      await t.giveCredits(a.patient, { text: 2 });
      const [sendRes, startRes] = await Promise.all([
        t
          .auth(a.patient)
          .then((headers) =>
            t.app.inject({ method: 'POST', url: `/api/v2/chat/${a.id}/messages`, headers, payload: { message: `race ${i}` } }),
          ),
        t.auth(a.doctor).then((headers) => t.app.inject({ method: 'POST', url: `/api/v2/appointments/${a.id}/start-session`, headers })),
      ]);
      expect(sendRes.statusCode, sendRes.body).toBe(200);
      const context = startRes.json().data.session_context as string;
      const history = (await t.app.inject({ url: `/api/v2/sessions/${context}/messages`, headers: await t.auth(a.doctor) })).json().data
        .messages;
      expect(history.map((m: { body: string }) => m.body)).toEqual([`race ${i}`]);
      const legacy = (await t.app.inject({ url: `/api/v2/chat/${a.id}/messages`, headers: await t.auth(a.doctor) })).json().data;
      expect(legacy.map((m: { message: string }) => m.message)).toEqual([`race ${i}`]);
    }
  });

  it.skipIf(!isPostgres)('a pre-session message committed while the writer waited for the appointment lock joins the session', async () => {
    // The race, made deterministic: a pre-session sender holds the appointment's row lock and has
    // inserted its message; start-session's writer statement starts (its snapshot cannot see the
    // message) and waits for the lock; the sender commits; the writer goes on.
    const a = await t.newAppointment({});
    await t.giveCredits(a.patient, { text: 2 });
    const sender = await t.ctx.database.pool!.connect();
    try {
      await sender.query('begin');
      await sender.query('select id from appointments where id = $1 for update', [a.id]);
      await sender.query(
        `insert into messages (appointment_id, sender_id, type, body, client_message_id) values ($1, $2, 'text', 'late pre-session', 'late-1')`,
        [a.id, a.patient.id],
      );
      const start = t
        .auth(a.doctor)
        .then((headers) => t.app.inject({ method: 'POST', url: `/api/v2/appointments/${a.id}/start-session`, headers }));
      await expect
        .poll(
          async () =>
            (
              await sql<{
                n: number;
              }>`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`.execute(
                t.ctx.db,
              )
            ).rows[0]!.n,
          { timeout: 5000 },
        )
        .toBeGreaterThan(0);
      await sender.query('commit');
      const started = await start;
      expect(started.statusCode, started.body).toBe(201);
      const context = started.json().data.session_context as string;
      const page = (await t.app.inject({ url: `/api/v2/sessions/${context}/messages`, headers: await t.auth(a.doctor) })).json().data;
      expect(page.messages.map((m: { body: string }) => m.body)).toEqual(['late pre-session']);
      expect(page.unread_count).toBe(1);
      const linked = await t.ctx.db.selectFrom('messages').select('session_id').where('appointment_id', '=', a.id).execute();
      expect(linked).toEqual([{ session_id: started.json().data.id }]);
    } finally {
      sender.release();
    }
  });

  it('no new pre-session messages into a cancelled appointment', async () => {
    t.flags.set({ ALLOW_LEGACY_APPOINTMENT_CHAT: true });
    const a = await t.newAppointment({ status: 'cancelled' });
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/v2/chat/${a.id}/messages`,
      headers: await t.auth(a.patient),
      payload: { message: 'hi' },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ error_code: 'SESSION_NOT_ACTIVE', appointment_id: a.id, appointment_status: 'cancelled' });
  });
});

describe('the one-statement legacy send', () => {
  it('an active session reached through the appointment writes one message and one would-block event', async () => {
    const s = await startSession(t);
    await sent(t, s.doctor, s.context);
    const before = await metricValue(t, 'chat_blocked_session_context_required_total', { operation: 'sendMessage', enforced: 'false' });
    const chatEvidence = async () =>
      (await rolloutStatus(t.ctx.db, await t.flags.current())).flag_status.find((f) => f.flag === 'ENFORCE_SESSION_GATED_CHAT')!.evidence;
    const evidenceBefore = await chatEvidence();
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/v2/chat/${s.appointmentId}/messages`,
      headers: await t.auth(s.patient),
      payload: { message: 'fast', temp_id: 'f1' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().data).toMatchObject({
      message: 'fast',
      session_id: s.sessionId,
      appointment_id: s.appointmentId,
      sender_name: s.patient.name,
    });
    expect(await guardEvents(s.appointmentId)).toEqual([
      expect.objectContaining({ outcome: 'would_block', operation: 'sendMessage', session_id: s.sessionId, user_id: s.patient.id }),
    ]);
    // The event is the message itself, marked with the legacy operation: one row written, not two.
    expect(await t.ctx.db.selectFrom('guard_events').selectAll().where('appointment_id', '=', s.appointmentId).execute()).toEqual([]);
    expect(
      await t.ctx.db.selectFrom('messages').select(['legacy_operation']).where('id', '=', res.json().data.id).executeTakeFirstOrThrow(),
    ).toEqual({ legacy_operation: 'sendMessage' });
    // …which rollout:status counts as would-block evidence.
    const evidence = await chatEvidence();
    expect(evidence.last_24h.events).toBe(evidenceBefore.last_24h.events + 1);
    expect(evidence.last_24h.appointments).toBe(evidenceBefore.last_24h.appointments + 1);
    expect(evidence.newest).toMatchObject({
      operation: 'sendMessage',
      appointment_id: s.appointmentId,
      session_id: s.sessionId,
      user_id: s.patient.id,
    });
    expect(logLines(ALLOWED, s.appointmentId, 'sendMessage')).toHaveLength(1);
    expect(await metricValue(t, 'chat_blocked_session_context_required_total', { operation: 'sendMessage', enforced: 'false' })).toBe(
      before + 1,
    );
    // A retry of the same temp_id: stored message, and the decision recorded again (it was made again).
    const retry = await t.app.inject({
      method: 'POST',
      url: `/api/v2/chat/${s.appointmentId}/messages`,
      headers: await t.auth(s.patient),
      payload: { message: 'fast', temp_id: 'f1' },
    });
    expect(retry.json().data.id).toBe(res.json().data.id);
    expect(await guardEvents(s.appointmentId)).toHaveLength(2);
  });
});
