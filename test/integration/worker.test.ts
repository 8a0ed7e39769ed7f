/**
 * The worker: the job list, run records (idle / failed / skipped), session expiry by the database
 * clock, notification delivery retry, the due-count gauge, job-run retention, and the whole
 * worker loop converting and expiring on its own.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionStatus } from '../../src/db/types.js';
import { AUTO_START_JOB } from '../../src/modules/jobs/auto-start.js';
import { dueGaugeJob } from '../../src/modules/jobs/due-gauge.js';
import { JOBS } from '../../src/modules/jobs/index.js';
import { jobRunsRetentionJob } from '../../src/modules/jobs/job-runs-retention.js';
import { notificationDeliveryJob } from '../../src/modules/jobs/notification-delivery.js';
import { runJobOnce, startWorker, type JobDefinition } from '../../src/modules/jobs/scheduler.js';
import { expireSessions, sessionExpiryJob } from '../../src/modules/jobs/session-expiry.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

const runRow = (runId: string) => t.ctx.db.selectFrom('job_runs').selectAll().where('run_id', '=', runId).executeTakeFirst();

describe('the job list', () => {
  it('has auto-start, expiry, notification delivery, the gauge and both legacy triggers', () => {
    const names = JOBS.map((j) => j.name);
    for (const n of [
      AUTO_START_JOB,
      'sessions:expire',
      'notifications:deliver',
      'metrics:appointments-due',
      'appointments:activate-booked',
      'appointments:process-sessions',
    ]) {
      expect(names).toContain(n);
    }
    expect(new Set(names).size).toBe(names.length);
    for (const j of JOBS) expect(j.intervalSeconds(t.ctx)).toBeGreaterThan(0);
  });
});

describe('run records', () => {
  const job = (over: Partial<JobDefinition>): JobDefinition => ({
    name: 'test:job',
    intervalSeconds: () => 1,
    run: async () => ({}),
    ...over,
  });

  it('idle runs are recorded only when the job asks; work, failures and skips always', async () => {
    const quiet = await runJobOnce(t.ctx, job({ recordIdleRuns: false }));
    expect(await runRow(quiet.runId)).toBeUndefined();
    const idle = await runJobOnce(t.ctx, job({ recordIdleRuns: true }));
    expect(await runRow(idle.runId)).toMatchObject({ status: 'succeeded', selected: 0 });
    const worked = await runJobOnce(t.ctx, job({ run: async () => ({ selected: 3, created: 2, failed: 1, details: { x: 1 } }) }));
    expect(await runRow(worked.runId)).toMatchObject({ status: 'succeeded', selected: 3, created: 2, failed: 1, details: { x: 1 } });
    const failed = await runJobOnce(
      t.ctx,
      job({
        run: async () => {
          throw new Error('boom');
        },
      }),
    );
    expect(failed.status).toBe('failed');
    expect(await runRow(failed.runId)).toMatchObject({ status: 'failed', details: { error: 'boom' } });
    const skipped = await runJobOnce(t.ctx, job({ run: async () => ({ status: 'skipped' }) }));
    expect(await runRow(skipped.runId)).toMatchObject({ status: 'skipped' });
    const row = (await runRow(worked.runId))!;
    expect(row.duration_ms).toBeGreaterThanOrEqual(0);
    expect(row.pid).toBe(process.pid);
  });
});

describe('session expiry (database clock)', () => {
  async function session(opts: {
    kind: 'text' | 'call';
    status: SessionStatus;
    source?: 'APPOINTMENT' | 'INSTANT';
    ageMinutes: number;
    set?: string;
  }) {
    const a = await t.newAppointment({ appointment_type: opts.kind === 'text' ? 'text' : 'voice' });
    const source = opts.source ?? 'APPOINTMENT';
    const s = await t.ctx.db
      .insertInto('sessions')
      .values({
        kind: opts.kind,
        modality: opts.kind === 'text' ? 'text' : 'voice',
        source,
        appointment_id: source === 'APPOINTMENT' ? a.id : null,
        patient_id: a.patient.id,
        doctor_id: a.doctor.id,
        status: opts.status,
        created_at: new Date(Date.now() - opts.ageMinutes * 60_000),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    if (source === 'APPOINTMENT')
      await t.ctx.db.updateTable('appointments').set({ session_id: s.id, status: 'in_progress' }).where('id', '=', a.id).execute();
    if (opts.set) await sql`update sessions set ${sql.raw(opts.set)} where id = ${s.id}`.execute(t.ctx.db);
    return { id: s.id, appointmentId: a.id };
  }
  const state = async (x: { id: number; appointmentId: number }) => ({
    session: await t.ctx.db.selectFrom('sessions').select(['status', 'end_reason']).where('id', '=', x.id).executeTakeFirstOrThrow(),
    appointment: (await t.ctx.db.selectFrom('appointments').select('status').where('id', '=', x.appointmentId).executeTakeFirstOrThrow())
      .status,
  });

  it('expires and times out exactly the sessions whose deadline passed', async () => {
    const join = t.config.sessionJoinWindowMinutes;
    const cases = {
      textNoShow: await session({ kind: 'text', status: 'waiting_for_doctor', ageMinutes: join + 1 }),
      textFresh: await session({ kind: 'text', status: 'waiting_for_doctor', ageMinutes: join - 5 }),
      textNoAnswer: await session({
        kind: 'text',
        status: 'waiting_for_doctor',
        ageMinutes: 10,
        set: `patient_first_message_at = now() - interval '6 minutes', doctor_response_deadline = now() - interval '1 minute'`,
      }),
      textWindowOpen: await session({
        kind: 'text',
        status: 'waiting_for_doctor',
        ageMinutes: join + 30, // the patient wrote: the join window no longer applies
        set: `patient_first_message_at = now() - interval '1 minute', doctor_response_deadline = now() + interval '4 minutes'`,
      }),
      textActive: await session({ kind: 'text', status: 'active', ageMinutes: join * 3, set: `activated_at = now() - interval '2 hours'` }),
      callNoShow: await session({ kind: 'call', status: 'waiting', ageMinutes: join + 1 }),
      callRinging: await session({
        kind: 'call',
        status: 'ringing',
        ageMinutes: 5,
        set: `ringing_since = now() - interval '91 seconds', patient_in_call = true`,
      }),
      callRingingFresh: await session({
        kind: 'call',
        status: 'ringing',
        ageMinutes: 5,
        set: `ringing_since = now() - interval '30 seconds', patient_in_call = true`,
      }),
      instantRinging: await session({
        kind: 'call',
        status: 'ringing',
        source: 'INSTANT',
        ageMinutes: 5,
        set: `ringing_since = now() - interval '2 minutes', patient_in_call = true`,
      }),
    };
    const r = await runJobOnce(t.ctx, sessionExpiryJob);
    expect(r.status).toBe('succeeded');
    expect(await state(cases.textNoShow)).toEqual({ session: { status: 'expired', end_reason: 'no_show' }, appointment: 'missed' });
    expect((await state(cases.textFresh)).session.status).toBe('waiting_for_doctor');
    expect(await state(cases.textNoAnswer)).toEqual({
      session: { status: 'expired', end_reason: 'doctor_no_response' },
      appointment: 'missed',
    });
    expect((await state(cases.textWindowOpen)).session.status).toBe('waiting_for_doctor');
    expect((await state(cases.textActive)).session.status).toBe('active');
    expect(await state(cases.callNoShow)).toEqual({ session: { status: 'expired', end_reason: 'no_show' }, appointment: 'missed' });
    expect(await state(cases.callRinging)).toEqual({ session: { status: 'waiting', end_reason: null }, appointment: 'in_progress' });
    expect((await state(cases.callRingingFresh)).session.status).toBe('ringing');
    expect((await state(cases.instantRinging)).session).toEqual({ status: 'missed', end_reason: 'no_answer' });
    // Nothing left past its deadline: a second pass changes nothing.
    expect((await expireSessions(t.ctx)).changed).toBe(0);
  });

  it('a request on a session past its deadline sees it expired (the expiry is committed, the action refused)', async () => {
    const s = await session({ kind: 'call', status: 'waiting', ageMinutes: t.config.sessionJoinWindowMinutes + 1 });
    const a = await t.ctx.db.selectFrom('appointments').select('patient_id').where('id', '=', s.appointmentId).executeTakeFirstOrThrow();
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/call_session:${s.id}/call/join`,
      headers: await t.auth({ id: a.patient_id, role: 'patient' }),
    });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ error_code: 'SESSION_NOT_ACTIVE', session_status: 'expired' });
    expect(await state(s)).toEqual({ session: { status: 'expired', end_reason: 'no_show' }, appointment: 'missed' });
  });

  it('a session a request holds locked is left for the next run (SKIP LOCKED), not waited for', async () => {
    if (t.ctx.database.kind !== 'postgres') return; // one connection: nothing can hold a lock beside us
    const s = await session({ kind: 'text', status: 'waiting_for_doctor', ageMinutes: t.config.sessionJoinWindowMinutes + 1 });
    const client = await t.ctx.database.pool!.connect();
    try {
      await client.query('begin');
      await client.query('select id from sessions where id = $1 for update', [s.id]);
      const r = await expireSessions(t.ctx);
      expect(r.locked).toBeGreaterThanOrEqual(1);
      await client.query('rollback');
    } finally {
      client.release();
    }
    await expireSessions(t.ctx);
    expect((await state(s)).session.status).toBe('expired');
  });
});

describe('notification delivery, the gauge, retention', () => {
  it('delivers outbox rows left undelivered, exactly once', async () => {
    const patient = await t.newPatient();
    await t.ctx.db
      .insertInto('notification_outbox')
      .values({
        dedupe_key: `test:${randomUUID()}`,
        recipient_id: patient.id,
        kind: 'session.started',
        payload: JSON.stringify({ session_id: 1 }),
      })
      .execute();
    await Promise.all([runJobOnce(t.ctx, notificationDeliveryJob), runJobOnce(t.ctx, notificationDeliveryJob)]);
    const got = await t.ctx.db.selectFrom('notifications').selectAll().where('user_id', '=', patient.id).execute();
    expect(got).toHaveLength(1);
  });

  it('appointments_due_count comes from the database', async () => {
    await sql`update appointments set status = 'cancelled' where status = 'confirmed'`.execute(t.ctx.db);
    for (let i = 0; i < 3; i++) await t.newAppointment({});
    await t.newAppointment({ scheduled_at: new Date(Date.now() + 3_600_000) });
    await runJobOnce(t.ctx, dueGaugeJob);
    expect(await t.ctx.metrics.registry.metrics()).toMatch(/^appointments_due_count 3$/m);
  });

  it('deletes idle runs older than 7 days, keeps the rest', async () => {
    const old = "now() - interval '8 days'";
    const ids = [];
    for (const [status, created] of [
      ['succeeded', 0],
      ['succeeded', 2],
      ['skipped', 0],
      ['failed', 0],
    ] as const) {
      const r = await sql<{ run_id: string }>`
        insert into job_runs (run_id, job, started_at, status, created) values (${randomUUID()}, 'test:old', ${sql.raw(old)}, ${status}, ${created})
        returning run_id`.execute(t.ctx.db);
      ids.push(r.rows[0]!.run_id);
    }
    await runJobOnce(t.ctx, jobRunsRetentionJob);
    const left = await t.ctx.db.selectFrom('job_runs').select('run_id').where('run_id', 'in', ids).execute();
    expect(left.map((r) => r.run_id).sort()).toEqual(ids.slice(1).sort());
  });
});

describe('the worker loop', () => {
  it('converts due appointments, delivers their notifications and stops cleanly', async () => {
    const fast = JOBS.map((j) => ({ ...j, intervalSeconds: () => 0.05 }));
    const appt = await t.newAppointment({ appointment_type: 'video' });
    const worker = startWorker(t.ctx, fast);
    try {
      await expect
        .poll(
          async () =>
            (await t.ctx.db.selectFrom('appointments').select('status').where('id', '=', appt.id).executeTakeFirstOrThrow()).status,
          { timeout: 10_000 },
        )
        .toBe('in_progress');
      await expect
        .poll(
          async () => (await t.ctx.db.selectFrom('notifications').select('id').where('user_id', '=', appt.patient.id).execute()).length,
          { timeout: 10_000 },
        )
        .toBe(1);
    } finally {
      await worker.stop();
    }
    // Converted by auto-start or (5 minutes early, legacy flag off) activate-booked — whichever
    // loop ran first; either way through the single writer, recorded as its run.
    const conv = await t.ctx.db
      .selectFrom('appointment_conversions')
      .select(['source', 'job_run_id'])
      .where('appointment_id', '=', appt.id)
      .execute();
    expect(conv).toHaveLength(1);
    expect(['auto_start', 'activate_booked']).toContain(conv[0]!.source);
    const run = await t.ctx.db.selectFrom('job_runs').select('job').where('run_id', '=', conv[0]!.job_run_id!).executeTakeFirst();
    expect(run?.job).toBe(conv[0]!.source === 'auto_start' ? AUTO_START_JOB : 'appointments:activate-booked');
  });
});
