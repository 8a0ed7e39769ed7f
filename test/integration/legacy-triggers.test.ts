/**
 * The legacy triggers: appointments:activate-booked and appointments:process-sessions.
 * They never touch an appointment that has a session; with DISABLE_LEGACY_APPOINTMENT_TRIGGERS they
 * do nothing (log line, skipped run, exit 0) and auto-start alone starts every due appointment.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Appointment, Db } from '../../src/db/types.js';
import { runAutoStart } from '../../src/modules/jobs/auto-start.js';
import { ACTIVATE_BOOKED_JOB, activateBooked, activateBookedJob } from '../../src/modules/jobs/legacy-activate-booked.js';
import { PROCESS_SESSIONS_JOB, processLegacySessions, processSessionsJob } from '../../src/modules/jobs/legacy-process-sessions.js';
import { runJobOnce } from '../../src/modules/jobs/scheduler.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { cliDatabase, type CliDatabase } from '../helpers/cli-run.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());
beforeEach(() => {
  t.flags.set({ DISABLE_LEGACY_APPOINTMENT_TRIGGERS: false });
});

const minutes = (m: number) => new Date(Date.now() + m * 60_000);
const appointment = (id: number) => t.ctx.db.selectFrom('appointments').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
const metric = async (name: string, command: string) => {
  const text = await t.ctx.metrics.registry.metrics();
  const m = new RegExp(`^${name}\\{command_name="${command}"\\} (\\d+)$`, 'm').exec(text);
  return Number(m?.[1] ?? NaN);
};

/** An appointment already started through the session path (has a session). */
async function withSession(status: Appointment['status'], scheduledAt: Date) {
  const a = await t.newAppointment({ scheduled_at: scheduledAt });
  const s = await t.ctx.db
    .insertInto('sessions')
    .values({
      kind: 'text',
      modality: 'text',
      source: 'APPOINTMENT',
      appointment_id: a.id,
      patient_id: a.patient.id,
      doctor_id: a.doctor.id,
      status: 'active',
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return t.ctx.db
    .updateTable('appointments')
    .set({ session_id: s.id, status, legacy_patient_active: false, legacy_doctor_active: false })
    .where('id', '=', a.id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

describe('appointments:activate-booked', () => {
  it('starts confirmed appointments from 5 minutes before their time, through the single writer', async () => {
    const soon = await t.newAppointment({ scheduled_at: minutes(3), appointment_type: 'video' });
    const later = await t.newAppointment({ scheduled_at: minutes(10) });
    const runId = randomUUID();
    const counts = await activateBooked(t.ctx, { runId });
    expect(counts.created).toBeGreaterThanOrEqual(1);
    const a = await appointment(soon.id);
    expect(a.status).toBe('in_progress');
    const s = await t.ctx.db.selectFrom('sessions').selectAll().where('id', '=', a.session_id!).executeTakeFirstOrThrow();
    expect(s).toMatchObject({ appointment_id: soon.id, modality: 'video', source: 'APPOINTMENT' });
    const conv = await t.ctx.db.selectFrom('appointment_conversions').selectAll().where('appointment_id', '=', soon.id).execute();
    expect(conv).toMatchObject([{ source: 'activate_booked', result: 'created', session_id: s.id, job_run_id: runId }]);
    expect((await appointment(later.id)).status).toBe('confirmed');
    // The notifications went through the outbox once.
    const outbox = await t.ctx.db
      .selectFrom('notification_outbox')
      .select(['recipient_id', 'also_notify'])
      .where('dedupe_key', '=', `session_started:${soon.id}:${s.id}`)
      .execute();
    expect(outbox).toEqual([{ recipient_id: soon.patient.id, also_notify: [soon.doctor.id] }]);
  });
});

describe('appointments:process-sessions', () => {
  async function legacyInProgress(scheduledAt: Date, patientActive: boolean, doctorActive: boolean, duration = 30) {
    const a = await t.newAppointment({ scheduled_at: scheduledAt });
    return t.ctx.db
      .updateTable('appointments')
      .set({
        status: 'in_progress',
        legacy_started_at: scheduledAt,
        legacy_patient_active: patientActive,
        legacy_doctor_active: doctorActive,
        duration_minutes: duration,
      })
      .where('id', '=', a.id)
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  it('closes legacy in_progress appointments (no session) after time + duration: completed or missed', async () => {
    const both = await legacyInProgress(minutes(-40), true, true);
    const patientOnly = await legacyInProgress(minutes(-40), true, false);
    const nobody = await legacyInProgress(minutes(-90), false, false, 60);
    const running = await legacyInProgress(minutes(-20), true, true); // 30 minutes, not over yet
    const longOne = await legacyInProgress(minutes(-50), false, false, 60);
    const confirmedPast = await t.newAppointment({ scheduled_at: minutes(-120) });

    const counts = await processLegacySessions(t.ctx, { runId: randomUUID() });
    expect(counts.details).toMatchObject({ completed: 1, missed: 2, session_appointments_touched: 0 });
    expect((await appointment(both.id)).status).toBe('completed');
    expect((await appointment(patientOnly.id)).status).toBe('missed');
    expect((await appointment(nobody.id)).status).toBe('missed');
    expect((await appointment(running.id)).status).toBe('in_progress');
    expect((await appointment(longOne.id)).status).toBe('in_progress');
    // Confirmed appointments belong to auto-start and recovery.
    expect((await appointment(confirmedPast.id)).updated_at).toEqual(confirmedPast.updated_at);
    // No billing: nothing was charged to anyone.
    const ledger = await t.ctx.db
      .selectFrom('ledger_entries')
      .select('id')
      .where('appointment_id', 'in', [both.id, patientOnly.id, nobody.id])
      .execute();
    expect(ledger).toEqual([]);
  });

  it('decides "completed" by the rule legacy billing uses: both flags, or a message from each', async () => {
    const say = async (appointmentId: number, senderId: number) =>
      sql`insert into messages (appointment_id, sender_id, type, body) values (${appointmentId}, ${senderId}, 'text', 'hi')`.execute(
        t.ctx.db,
      );
    const chatted = await legacyInProgress(minutes(-45), false, false);
    await say(chatted.id, chatted.patient_id);
    await say(chatted.id, chatted.doctor_id);
    const doctorAlone = await legacyInProgress(minutes(-45), false, true);
    await say(doctorAlone.id, doctorAlone.doctor_id);
    await say(doctorAlone.id, doctorAlone.doctor_id);
    const patientFlagDoctorMessage = await legacyInProgress(minutes(-45), true, false);
    await say(patientFlagDoctorMessage.id, patientFlagDoctorMessage.doctor_id);

    const counts = await processLegacySessions(t.ctx, { runId: randomUUID() });
    expect(counts.details).toMatchObject({ completed: 1, missed: 2 });
    expect((await appointment(chatted.id)).status).toBe('completed');
    expect((await appointment(doctorAlone.id)).status).toBe('missed');
    // One flag and the other side's message is neither "both flags" nor "a message from each".
    expect((await appointment(patientFlagDoctorMessage.id)).status).toBe('missed');
  });
});

describe('they never touch an appointment that has a session', () => {
  it('whatever its status and time', async () => {
    const touchedBefore = {
      a: await metric('legacy_trigger_session_appointments_touched_total', ACTIVATE_BOOKED_JOB),
      p: await metric('legacy_trigger_session_appointments_touched_total', PROCESS_SESSIONS_JOB),
    };
    expect(touchedBefore).toEqual({ a: 0, p: 0 });
    const rows = [
      await withSession('in_progress', minutes(-120)), // long over: process-sessions' target shape, but it has a session
      await withSession('in_progress', minutes(2)),
      await withSession('confirmed', minutes(-1)), // an inconsistent row: confirmed yet linked
      await withSession('confirmed', minutes(3)),
      await withSession('completed', minutes(-300)),
    ];
    for (let i = 0; i < 2; i++) {
      await runJobOnce(t.ctx, activateBookedJob);
      await runJobOnce(t.ctx, processSessionsJob);
    }
    for (const before of rows) {
      const now = await appointment(before.id);
      expect(now, `appointment ${before.id}`).toEqual(before);
    }
    const conv = await t.ctx.db
      .selectFrom('appointment_conversions')
      .select('id')
      .where(
        'appointment_id',
        'in',
        rows.map((r) => r.id),
      )
      .execute();
    expect(conv).toEqual([]);
    expect(await metric('legacy_trigger_session_appointments_touched_total', ACTIVATE_BOOKED_JOB)).toBe(0);
    expect(await metric('legacy_trigger_session_appointments_touched_total', PROCESS_SESSIONS_JOB)).toBe(0);
  });

  it('counts executions and processed appointments', async () => {
    const before = await metric('legacy_trigger_executions_total', ACTIVATE_BOOKED_JOB);
    const processedBefore = await metric('legacy_trigger_appointments_processed_total', ACTIVATE_BOOKED_JOB);
    await t.newAppointment({ scheduled_at: minutes(1) });
    await runJobOnce(t.ctx, activateBookedJob);
    expect(await metric('legacy_trigger_executions_total', ACTIVATE_BOOKED_JOB)).toBe(before + 1);
    expect(await metric('legacy_trigger_appointments_processed_total', ACTIVATE_BOOKED_JOB)).toBeGreaterThan(processedBefore);
  });
});

describe('DISABLE_LEGACY_APPOINTMENT_TRIGGERS=true', () => {
  it('they do nothing, log it, record a skipped run — and auto-start alone starts every due appointment', async () => {
    t.flags.set({ DISABLE_LEGACY_APPOINTMENT_TRIGGERS: true });
    const executions = await metric('legacy_trigger_executions_total', ACTIVATE_BOOKED_JOB);
    const due = [];
    for (const type of ['text', 'audio', 'voice', 'video'])
      due.push(await t.newAppointment({ appointment_type: type, scheduled_at: minutes(-2) }));
    const soon = await t.newAppointment({ scheduled_at: minutes(2) });
    const legacy = await t.newAppointment({ scheduled_at: minutes(-60) });
    await t.ctx.db.updateTable('appointments').set({ status: 'in_progress' }).where('id', '=', legacy.id).execute();

    t.logs.length = 0;
    for (const job of [activateBookedJob, processSessionsJob]) {
      const r = await runJobOnce(t.ctx, job);
      expect(r.status).toBe('skipped');
      const row = await t.ctx.db.selectFrom('job_runs').selectAll().where('run_id', '=', r.runId).executeTakeFirstOrThrow();
      expect(row).toMatchObject({ job: job.name, status: 'skipped', selected: 0 });
    }
    const disabled = t.logs.filter((l) => l['msg'] === 'Legacy appointment triggers disabled');
    expect(disabled.map((l) => l['command_name'])).toEqual([ACTIVATE_BOOKED_JOB, PROCESS_SESSIONS_JOB]);
    expect(await metric('legacy_trigger_executions_total', ACTIVATE_BOOKED_JOB)).toBe(executions);
    for (const a of [...due, soon]) expect((await appointment(a.id)).status).toBe('confirmed');
    expect((await appointment(legacy.id)).status).toBe('in_progress');

    // No functional gap: auto-start converts every due appointment by itself.
    await runAutoStart(t.ctx, { runId: randomUUID(), trigger: 'worker' });
    for (const a of due) expect((await appointment(a.id)).status, a.appointment_type).toBe('in_progress');
    const left = await sql<{ n: number }>`
      select count(*)::int as n from appointments
       where status = 'confirmed' and session_id is null and scheduled_at <= now() and appointment_type in ('text', 'audio', 'voice', 'video')
         and conversion_attempts = 0`.execute(t.ctx.db);
    expect(left.rows[0]!.n).toBe(0);
    // The appointment 2 minutes ahead is auto-start's too, at its time (not 5 minutes early).
    expect((await appointment(soon.id)).status).toBe('confirmed');
  });
});

describe('the CLI commands', () => {
  let cli: CliDatabase;
  beforeAll(async () => {
    cli = await cliDatabase();
  });
  afterAll(async () => cli?.close());

  async function fixture(db: Db, minutesFromNow: number, status = 'confirmed') {
    const p = await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P') returning id`.execute(db);
    const d = await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D') returning id`.execute(db);
    const a = await sql<{ id: number }>`
      insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
      values (${p.rows[0]!.id}, ${d.rows[0]!.id}, 'text', ${status}, now() + make_interval(mins => ${minutesFromNow}))
      returning id`.execute(db);
    return a.rows[0]!.id;
  }

  const ids: number[] = [];
  const legacyIds: number[] = [];

  it('with the flag on: exit 0, the message, a skipped run, nothing touched', async () => {
    const id = await cli.db((db) => fixture(db, 2));
    const legacyId = await cli.db((db) => fixture(db, -60, 'in_progress'));
    ids.push(id);
    legacyIds.push(legacyId);
    for (const name of [ACTIVATE_BOOKED_JOB, PROCESS_SESSIONS_JOB]) {
      const r = await cli.run([name], { env: { DISABLE_LEGACY_APPOINTMENT_TRIGGERS: 'true' } });
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain('Legacy appointment triggers disabled');
      const j = await cli.run([name, '--json'], { env: { DISABLE_LEGACY_APPOINTMENT_TRIGGERS: 'yes' } });
      expect(JSON.parse(j.out)).toMatchObject({ command_name: name, status: 'skipped', disabled: true });
    }
    const runs = await cli.db((db) => db.selectFrom('job_runs').select(['job', 'status']).orderBy('id').execute());
    expect(runs.map((r) => r.status)).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
    const statuses = await cli.db((db) =>
      db.selectFrom('appointments').select(['id', 'status']).where('id', 'in', [id, legacyId]).orderBy('id').execute(),
    );
    expect(statuses.map((s) => s.status)).toEqual(['confirmed', 'in_progress']);
  });

  it('with the flag off: they run and say what they did', async () => {
    ids.push(await cli.db((db) => fixture(db, 2)));
    legacyIds.push(await cli.db((db) => fixture(db, -60, 'in_progress')));
    const a = await cli.run([ACTIVATE_BOOKED_JOB, '--verbose']);
    expect(a.code, a.err).toBe(0);
    for (const id of ids) expect(a.out).toMatch(new RegExp(`created  appointment ${id} → text_session:\\d+ \\(text\\)`));
    expect(a.out).toMatch(/activate-booked run [0-9a-f-]{36}: 2 attempted — 2 created, 0 skipped, 0 failed/);
    const p = await cli.run([PROCESS_SESSIONS_JOB, '--json', '--verbose']);
    expect(p.code, p.err).toBe(0);
    expect(JSON.parse(p.out)).toMatchObject({
      status: 'succeeded',
      completed_count: 0,
      missed_count: 2,
      appointments: legacyIds.map((id) => ({ appointment_id: id, status: 'missed' })),
    });
  });
});
