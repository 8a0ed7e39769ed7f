/**
 * Sessions end without a client: idle text chats end `inactive` at their last
 * message, calls both participants left end `disconnected` when the last one left, booked and
 * instant sessions end `time_limit` (with a notice 5 minutes before), and billing never runs past
 * any of them — through the worker's own job functions, on a real database, with the
 * application clock injected. Runs on PGlite and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditBilling } from '../../src/modules/billing/audit.js';
import { runBillingTick } from '../../src/modules/billing/session-billing.js';
import { endSessionsPastLimits, recordCallPresence } from '../../src/modules/sessions/limits.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { send } from './chat-helpers.js';
import { MIN, grant, ledgerOf, liveSession, remaining, sessionRow } from './billing-fixtures.js';

let t: TestHarness;
/** The application clock; null = real time. */
let clock: Date | null = null;
const later = (ms: number) => new Date(Date.now() + ms);

beforeAll(async () => {
  t = await createHarness({ now: () => clock ?? new Date() });
});
afterAll(async () => t?.close());

const appointmentOf = (id: number) => t.ctx.db.selectFrom('appointments').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

describe('inactive: an idle text session', () => {
  it('a 30-minute booking where the doctor wrote once, left 5 h — ends inactive at that message, 1 unit, not 20', async () => {
    clock = null;
    const patient = await t.newPatient();
    const sub = await grant(t, patient, { text: 20 });
    const s = await liveSession(t, { modality: 'text', patient, fromAppointment: true, doctorCountry: 'MW' });
    expect((await send(t, s.doctor, s.context, { body: 'Hello, how can I help?' })).statusCode).toBe(201);
    const msg = await t.ctx.db.selectFrom('messages').select('created_at').where('session_id', '=', s.session.id).executeTakeFirstOrThrow();

    clock = later(5 * 60 * MIN);
    await endSessionsPastLimits(t.ctx);
    await runBillingTick(t.ctx);
    const ended = await sessionRow(t, s.session.id);
    expect(ended).toMatchObject({ status: 'ended', end_reason: 'inactive', units_billed: 1 });
    expect(ended.ended_at!.getTime()).toBe(msg.created_at.getTime());
    expect(ended.settled_at).not.toBeNull();
    expect(await ledgerOf(t, { session_id: s.session.id })).toHaveLength(1);
    expect(await remaining(t, sub)).toMatchObject({ text_remaining: 19 });
    expect((await appointmentOf(s.appointmentId!)).status).toBe('completed');
    clock = null;
  });

  it('runs to the minute: 14:59 after the last message it continues, at 15:00 it ends', async () => {
    clock = null;
    const s = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 0 });
    const activated = (await sessionRow(t, s.session.id)).activated_at!;
    clock = new Date(activated.getTime() + 15 * MIN - 1000);
    await endSessionsPastLimits(t.ctx);
    expect((await sessionRow(t, s.session.id)).status).toBe('active');
    clock = new Date(activated.getTime() + 15 * MIN);
    await endSessionsPastLimits(t.ctx);
    expect(await sessionRow(t, s.session.id)).toMatchObject({ status: 'ended', end_reason: 'inactive', units_billed: 1 });
    clock = null;
  });

  it('the tick never charges past the last message while the chat is quiet', async () => {
    clock = null;
    // Activated 25 min ago, nothing written since: 2 units completed by the clock, but a chat
    // quiet since activation costs 1 (it ends at its last message) — the tick bills 1, never 2.
    const s = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 25 * MIN });
    await t.ctx.db.deleteFrom('messages').where('session_id', '=', s.session.id).execute();
    await runBillingTick(t.ctx);
    expect(await sessionRow(t, s.session.id)).toMatchObject({ status: 'ended', end_reason: 'inactive', units_billed: 1 });
    expect(await ledgerOf(t, { session_id: s.session.id })).toHaveLength(1);
  });
});

describe('disconnected: a call both participants left', () => {
  it('ends when both have been gone for the grace, billed up to when the last one left', async () => {
    clock = null;
    const s = await liveSession(t, { modality: 'voice', credits: { voice: 5 }, startedAgoMs: 20 * MIN });
    const connected = s.session.connected_at!;
    const patientLeft = new Date(connected.getTime() + 17 * MIN);
    const doctorLeft = new Date(connected.getTime() + 18 * MIN);
    expect(await recordCallPresence(t.ctx.db, s.session.id, s.patient.id, false, patientLeft)).toBe(true);
    clock = new Date(doctorLeft.getTime() + 59_000);
    expect(await recordCallPresence(t.ctx.db, s.session.id, s.doctor.id, false, doctorLeft)).toBe(true);
    expect((await endSessionsPastLimits(t.ctx)).ended).toBe(0); // 59 s: within the grace
    clock = new Date(doctorLeft.getTime() + 60_000);
    expect((await endSessionsPastLimits(t.ctx)).by_reason).toMatchObject({ disconnected: 1 });
    const ended = await sessionRow(t, s.session.id);
    expect(ended).toMatchObject({ status: 'ended', end_reason: 'disconnected', units_billed: 2 }); // 18 min → 2 units
    expect(ended.ended_at!.getTime()).toBe(doctorLeft.getTime());
    clock = null;
  });

  it('a participant back within the grace continues the same call', async () => {
    clock = null;
    const s = await liveSession(t, { modality: 'video', credits: { video: 5 }, startedAgoMs: 5 * MIN });
    const left = new Date();
    await recordCallPresence(t.ctx.db, s.session.id, s.patient.id, false, left);
    await recordCallPresence(t.ctx.db, s.session.id, s.doctor.id, false, left);
    await recordCallPresence(t.ctx.db, s.session.id, s.patient.id, true, new Date(left.getTime() + 30_000));
    clock = new Date(left.getTime() + 10 * MIN);
    await endSessionsPastLimits(t.ctx);
    expect(await sessionRow(t, s.session.id)).toMatchObject({ status: 'connected', patient_away_since: null });
    clock = null;
  });

  it('presence is recorded only for participants of a live call', async () => {
    const text = await liveSession(t, { modality: 'text', credits: { text: 1 } });
    expect(await recordCallPresence(t.ctx.db, text.session.id, text.patient.id, false, new Date())).toBe(false);
    const call = await liveSession(t, { modality: 'voice', credits: { voice: 1 }, startedAgoMs: 0 });
    const stranger = await t.newPatient();
    expect(await recordCallPresence(t.ctx.db, call.session.id, stranger.id, false, new Date())).toBe(false);
    expect(await sessionRow(t, call.session.id)).toMatchObject({ patient_away_since: null, doctor_away_since: null });
  });
});

describe('time_limit: booked and instant sessions', () => {
  it('a booked call gets a notice 5 minutes before its booked end + overrun, then ends there, billed at most the booking', async () => {
    clock = null;
    const s = await liveSession(t, { modality: 'voice', credits: { voice: 10 }, fromAppointment: true, startedAgoMs: 0 });
    const appt = await appointmentOf(s.appointmentId!);
    expect(s.session.allowed_minutes).toBe(appt.duration_minutes);
    const limit = new Date(appt.scheduled_at.getTime() + (appt.duration_minutes + 10) * MIN);

    clock = new Date(limit.getTime() - 6 * MIN);
    expect((await endSessionsPastLimits(t.ctx)).noticed).toBe(0);
    clock = new Date(limit.getTime() - 5 * MIN);
    expect((await endSessionsPastLimits(t.ctx)).noticed).toBe(1);
    expect((await endSessionsPastLimits(t.ctx)).noticed).toBe(0); // once
    const notice = await t.ctx.db
      .selectFrom('notification_outbox')
      .selectAll()
      .where('dedupe_key', '=', `session_ending:${s.session.id}`)
      .executeTakeFirstOrThrow();
    expect(notice).toMatchObject({ recipient_id: s.patient.id, also_notify: [s.doctor.id], kind: 'session.ending_soon' });

    clock = new Date(limit.getTime() + 3 * 60 * MIN); // nobody ended it for hours
    expect((await endSessionsPastLimits(t.ctx)).by_reason).toMatchObject({ time_limit: 1 });
    const ended = await sessionRow(t, s.session.id);
    expect(ended).toMatchObject({ status: 'ended', end_reason: 'time_limit', units_billed: 3 }); // 30-min booking: 3 units
    expect(ended.ended_at!.getTime()).toBe(limit.getTime());
    clock = null;
  });

  it('an instant session ends at INSTANT_SESSION_MAX_MINUTES, billed at most that time', async () => {
    clock = null;
    const s = await liveSession(t, { modality: 'video', credits: { video: 20 }, startedAgoMs: 0 });
    expect(s.session.allowed_minutes).toBe(60);
    clock = new Date(s.session.created_at.getTime() + 90 * MIN);
    await endSessionsPastLimits(t.ctx);
    const ended = await sessionRow(t, s.session.id);
    expect(ended).toMatchObject({ status: 'ended', end_reason: 'time_limit', units_billed: 6 });
    expect(ended.ended_at!.getTime()).toBe(s.session.created_at.getTime() + 60 * MIN);
    clock = null;
  });
});

describe('several workers', () => {
  it('two sweeps at once end each session exactly once; the ledger and the audit agree', async () => {
    clock = null;
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) {
      const s = await liveSession(t, { modality: i % 2 ? 'text' : 'voice', credits: { text: 9, voice: 9 }, startedAgoMs: 25 * MIN });
      if (i % 2 === 1) await t.ctx.db.deleteFrom('messages').where('session_id', '=', s.session.id).execute(); // quiet chat
      if (i % 2 === 0) {
        await recordCallPresence(t.ctx.db, s.session.id, s.patient.id, false, new Date(Date.now() - 5 * MIN));
        await recordCallPresence(t.ctx.db, s.session.id, s.doctor.id, false, new Date(Date.now() - 5 * MIN));
      }
      ids.push(s.session.id);
    }
    const [a, b, c] = await Promise.all([endSessionsPastLimits(t.ctx), endSessionsPastLimits(t.ctx), runBillingTick(t.ctx)]);
    const rows = await t.ctx.db.selectFrom('sessions').selectAll().where('id', 'in', ids).execute();
    expect(rows.every((r) => r.status === 'ended')).toBe(true);
    expect(a.ended + b.ended + c.ended_by_limit).toBe(6);
    for (const r of rows) {
      expect(await ledgerOf(t, { session_id: r.id })).toHaveLength(r.units_billed);
    }
    const audit = await auditBilling(t.ctx.db);
    expect(audit.findings).toEqual([]);
  });
});
