/**
 * Auto-start: what is due, what is not, failures with backoff and giving up, no
 * head-of-line blocking, the run's records (job run, conversion rows, log events, metrics),
 * notifications, and the CLI.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTO_START_JOB, autoStartJob, runAutoStart } from '../../src/modules/jobs/auto-start.js';
import { runJobOnce } from '../../src/modules/jobs/scheduler.js';
import type { Db } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { cliDatabase, type CliDatabase } from '../helpers/cli-run.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness({ env: { AUTO_START_BATCH_SIZE: '3' } });
});
afterAll(async () => t?.close());

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);
const appointment = (id: number) => t.ctx.db.selectFrom('appointments').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
const sessionOf = (appointmentId: number) =>
  t.ctx.db.selectFrom('sessions').selectAll().where('appointment_id', '=', appointmentId).executeTakeFirst();
const run = (opts: { limit?: number } = {}) => runAutoStart(t.ctx, { runId: randomUUID(), trigger: 'worker', ...opts });

describe('what auto-start converts', () => {
  it('starts every due appointment with the modality of its type, and links it', async () => {
    const types = ['text', 'audio', 'voice', 'video'] as const;
    const appts = [];
    for (const [i, type] of types.entries())
      appts.push(await t.newAppointment({ appointment_type: type, scheduled_at: minutesAgo(10 - i) }));
    const summary = await run();
    expect(summary.created_count).toBeGreaterThanOrEqual(4);
    const expected = {
      text: ['text', 'text', 'waiting_for_doctor'],
      audio: ['call', 'voice', 'waiting'],
      voice: ['call', 'voice', 'waiting'],
      video: ['call', 'video', 'waiting'],
    };
    for (const a of appts) {
      const s = await sessionOf(a.id);
      const [kind, modality, status] = expected[a.appointment_type as keyof typeof expected];
      expect(s, a.appointment_type).toMatchObject({
        kind,
        modality,
        status,
        source: 'APPOINTMENT',
        patient_id: a.patient.id,
        doctor_id: a.doctor.id,
      });
      expect(await appointment(a.id)).toMatchObject({ status: 'in_progress', session_id: s!.id, conversion_attempts: 0 });
    }
  });

  it('leaves alone what is not due: future, too late, pending, cancelled, already started', async () => {
    const future = await t.newAppointment({ scheduled_at: new Date(Date.now() + 10 * 60_000) });
    const tooLate = await t.newAppointment({ scheduled_at: minutesAgo(t.config.autoStartMaxLatenessMinutes + 5) });
    const pending = await t.newAppointment({ status: 'pending' });
    const cancelled = await t.newAppointment({ status: 'cancelled' });
    const completed = await t.newAppointment({ status: 'completed' });
    await run();
    for (const a of [future, tooLate, pending, cancelled, completed]) {
      expect(await sessionOf(a.id), a.status).toBeUndefined();
      const now = await appointment(a.id);
      expect(now.status).toBe(a.status);
      expect(now.updated_at).toEqual(a.updated_at);
    }
  });

  it('a failure is recorded with backoff, retried, and given up after the max attempts', async () => {
    const bad = await t.newAppointment({ appointment_type: 'hologram', scheduled_at: minutesAgo(30) });
    await run();
    let a = await appointment(bad.id);
    expect(a).toMatchObject({
      status: 'confirmed',
      session_id: null,
      conversion_attempts: 1,
      last_conversion_error: 'invalid_appointment_state',
    });
    expect(a.next_conversion_at!.getTime()).toBeGreaterThan(Date.now() + 20_000); // 30 s backoff
    // Not retried before its backoff.
    await run();
    expect((await appointment(bad.id)).conversion_attempts).toBe(1);
    // Backoff reached → retried, until the max; then never again (left for recovery).
    for (let i = 0; i < t.config.autoStartMaxAttempts + 2; i++) {
      await sql`update appointments set next_conversion_at = now() - interval '1 second' where id = ${bad.id}`.execute(t.ctx.db);
      await run();
    }
    a = await appointment(bad.id);
    expect(a.conversion_attempts).toBe(t.config.autoStartMaxAttempts);
    const rows = await t.ctx.db.selectFrom('appointment_conversions').selectAll().where('appointment_id', '=', bad.id).execute();
    expect(rows.map((r) => [r.result, r.failure_reason, r.source])).toEqual(
      Array.from({ length: t.config.autoStartMaxAttempts }, () => ['failed', 'invalid_appointment_state', 'auto_start']),
    );
  });

  it('failing old appointments never block newer ones (no head-of-line blocking)', async () => {
    // Batch size is 3: four failing appointments older than the good one fill more than a batch.
    const bad = [];
    for (let i = 0; i < 4; i++) bad.push(await t.newAppointment({ appointment_type: 'fax', scheduled_at: minutesAgo(50 - i) }));
    const good = await t.newAppointment({ appointment_type: 'text', scheduled_at: minutesAgo(1) });
    const summary = await run();
    expect(summary.batches).toBeGreaterThanOrEqual(2);
    expect((await appointment(good.id)).status).toBe('in_progress');
    for (const b of bad) expect((await appointment(b.id)).conversion_attempts).toBe(1);
  });

  it('a patient already in a live session: deferred_patient_busy — no attempt, no failure, converted on the first run after that session ends', async () => {
    const first = await t.newAppointment({ scheduled_at: minutesAgo(20) });
    const second = await t.newAppointment({ patient: first.patient, scheduled_at: minutesAgo(19) });
    const s1 = await run();
    expect(s1.failed_count).toBe(0);
    expect((await appointment(first.id)).status).toBe('in_progress');
    expect(await appointment(second.id)).toMatchObject({
      status: 'confirmed',
      conversion_attempts: 0,
      next_conversion_at: null,
      last_conversion_error: 'deferred_patient_busy',
    });
    const recorded = await t.ctx.db.selectFrom('appointment_conversions').selectAll().where('appointment_id', '=', second.id).execute();
    expect(recorded.map((r) => [r.result, r.failure_reason])).toEqual([['deferred', 'deferred_patient_busy']]);

    // While the patient stays busy, runs leave it alone (no attempts, no rows) however many there are.
    for (let i = 0; i < 7; i++) await run();
    expect((await appointment(second.id)).conversion_attempts).toBe(0);
    expect(
      await t.ctx.db.selectFrom('appointment_conversions').select('id').where('appointment_id', '=', second.id).execute(),
    ).toHaveLength(1);

    // The blocking session ends: the very next run converts it.
    const blocking = await sessionOf(first.id);
    const end = await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/text_session:${blocking!.id}/end`,
      headers: await t.auth(first.patient),
    });
    expect(end.statusCode).toBe(200);
    await run();
    expect(await appointment(second.id)).toMatchObject({ status: 'in_progress', conversion_attempts: 0, last_conversion_error: null });
  });

  it('a live session committed for a patient while the batch runs: that one is deferred, the batch goes on', async () => {
    if (t.ctx.database.kind !== 'postgres') return; // needs a second connection
    await run();
    const a = await t.newAppointment({ scheduled_at: minutesAgo(4) });
    const b = await t.newAppointment({ scheduled_at: minutesAgo(3) });
    // Another transaction creates a live (instant) session for a's patient and has not committed:
    // the batch's snapshot cannot see it, its insert waits on the unique index, then conflicts.
    const other = await t.ctx.database.pool!.connect();
    try {
      await other.query('begin');
      await other.query(
        `insert into sessions (kind, modality, source, patient_id, doctor_id, status) values ('text', 'text', 'INSTANT', $1, $2, 'waiting_for_doctor')`,
        [a.patient.id, b.doctor.id],
      );
      const running = run();
      await expect
        .poll(async () => {
          const w = await t.ctx.database.pool!.query(
            `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`,
          );
          return w.rows[0].n as number;
        })
        .toBeGreaterThan(0);
      t.logs.length = 0;
      await other.query('commit');
      const summary = await running;
      expect(summary.failed_count).toBe(0);
      expect(summary.deferred_count).toBe(1);
      // Retried as a batch tolerating the conflict, not one by one.
      expect(t.logs.filter((l) => l['msg'] === 'conversion batch failed; retrying one by one')).toEqual([]);
    } finally {
      other.release();
    }
    expect(await appointment(a.id)).toMatchObject({
      status: 'confirmed',
      last_conversion_error: 'deferred_patient_busy',
      conversion_attempts: 0,
    });
    expect((await appointment(b.id)).status).toBe('in_progress');
  });

  it('repairs a link that was never written (a session names the appointment, the appointment does not name it)', async () => {
    await run();
    const a = await t.newAppointment({ scheduled_at: minutesAgo(6), appointment_type: 'voice' });
    const other = await t.newAppointment({ scheduled_at: minutesAgo(5) });
    // Cannot happen through the writer (both are written in one transaction); imported data can.
    const orphan = await t.ctx.db
      .insertInto('sessions')
      .values({
        kind: 'call',
        modality: 'voice',
        source: 'APPOINTMENT',
        appointment_id: a.id,
        patient_id: a.patient.id,
        doctor_id: a.doctor.id,
        status: 'waiting',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const summary = await run();
    expect(summary.failed_count).toBe(0);
    expect(await appointment(a.id)).toMatchObject({ status: 'in_progress', session_id: orphan.id });
    expect((await appointment(other.id)).status).toBe('in_progress');
    const sessions = await t.ctx.db.selectFrom('sessions').select('id').where('appointment_id', '=', a.id).execute();
    expect(sessions).toEqual([{ id: orphan.id }]);
    const outbox = await t.ctx.db
      .selectFrom('notification_outbox')
      .select('dedupe_key')
      .where('dedupe_key', 'like', `session_started:${a.id}:%`)
      .execute();
    expect(outbox).toEqual([{ dedupe_key: `session_started:${a.id}:${orphan.id}` }]);
  });

  it('--limit: at most N appointments in the run', async () => {
    await run(); // drain what earlier tests left
    const appts = [];
    for (let i = 0; i < 5; i++) appts.push(await t.newAppointment({ scheduled_at: minutesAgo(5 - i) }));
    const summary = await run({ limit: 4 });
    expect(summary).toMatchObject({ attempted_count: 4, created_count: 4, stopped_by: 'limit' });
    const started = await Promise.all(appts.map(async (a) => (await appointment(a.id)).status));
    expect(started).toEqual(['in_progress', 'in_progress', 'in_progress', 'in_progress', 'confirmed']); // oldest first
  });

  it('two runs at once convert each appointment exactly once', async () => {
    const appts = [];
    for (let i = 0; i < 12; i++)
      appts.push(await t.newAppointment({ appointment_type: i % 2 ? 'video' : 'text', scheduled_at: minutesAgo(3) }));
    const [a, b] = await Promise.all([run(), run()]);
    expect(a.failed_count + b.failed_count).toBe(0);
    for (const appt of appts) {
      const sessions = await t.ctx.db.selectFrom('sessions').select('id').where('appointment_id', '=', appt.id).execute();
      expect(sessions).toHaveLength(1);
      expect((await appointment(appt.id)).session_id).toBe(sessions[0]!.id);
    }
    const created = await t.ctx.db
      .selectFrom('appointment_conversions')
      .select(({ fn }) => fn.countAll<number>().as('n'))
      .where(
        'appointment_id',
        'in',
        appts.map((x) => x.id),
      )
      .where('result', '=', 'created')
      .executeTakeFirstOrThrow();
    expect(Number(created.n)).toBe(12);
  });
});

describe('records of a run', () => {
  it('a job run row, one run log event, one event and one conversion row per appointment, metrics, notifications', async () => {
    await run();
    const appt = await t.newAppointment({ appointment_type: 'video', scheduled_at: minutesAgo(2) });
    const bad = await t.newAppointment({ appointment_type: 'carrier-pigeon', scheduled_at: minutesAgo(2) });
    t.logs.length = 0;
    const result = await runJobOnce(t.ctx, autoStartJob);
    expect(result.status).toBe('succeeded');
    const jobRun = await t.ctx.db.selectFrom('job_runs').selectAll().where('run_id', '=', result.runId).executeTakeFirstOrThrow();
    expect(jobRun).toMatchObject({ job: AUTO_START_JOB, status: 'succeeded', selected: 2, created: 1, failed: 1, skipped: 0 });
    // Due includes what earlier tests left failing (backing off or given up): still due.
    const due = (jobRun.details as { due_count: number }).due_count;
    expect(due).toBeGreaterThanOrEqual(2);
    expect(jobRun.details).toMatchObject({ trigger: 'worker' });

    const runEvents = t.logs.filter((l) => l['event'] === 'appointment_auto_start_run');
    expect(runEvents).toHaveLength(1);
    expect(runEvents[0]).toMatchObject({
      run_id: result.runId,
      due_count: due,
      attempted_count: 2,
      created_count: 1,
      skipped_count: 0,
      failed_count: 1,
      source: 'APPOINTMENT',
      msg: 'appointment_auto_start_run',
    });
    expect(typeof runEvents[0]!['runtime_ms']).toBe('number');
    const s = (await sessionOf(appt.id))!;
    const perAppointment = t.logs.filter((l) => l['event'] === 'appointment_session_conversion');
    expect(perAppointment).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          appointment_id: appt.id,
          result: 'created',
          session_id: s.id,
          failure_reason: null,
          source: 'auto_start',
          job_run_id: result.runId,
        }),
        expect.objectContaining({
          appointment_id: bad.id,
          result: 'failed',
          session_id: null,
          failure_reason: 'invalid_appointment_state',
          source: 'auto_start',
          job_run_id: result.runId,
        }),
      ]),
    );
    const conv = await t.ctx.db
      .selectFrom('appointment_conversions')
      .selectAll()
      .where('job_run_id', '=', result.runId)
      .orderBy('appointment_id')
      .execute();
    expect(conv.map((c) => [c.appointment_id, c.result, c.session_id])).toEqual([
      [appt.id, 'created', s.id],
      [bad.id, 'failed', null],
    ]);

    const metrics = await t.ctx.metrics.registry.metrics();
    expect(metrics).toMatch(/appointment_sessions_created_total\{modality="video",source="auto_start"\} [1-9]/);
    expect(metrics).toMatch(/appointment_session_conversion_failed_total\{reason="invalid_appointment_state"\} [1-9]/);

    // Delivered right after the run: exactly one "session started" notification per participant.
    for (const user of [appt.patient, appt.doctor]) {
      const headers = await t.auth(user);
      const mine = async () => {
        const items = (await t.app.inject({ url: '/api/v2/me/notifications', headers })).json().data as {
          payload: { appointment_id: number };
        }[];
        return items.filter((n) => n.payload.appointment_id === appt.id).length;
      };
      await expect.poll(mine).toBe(1);
    }
  });

  it('idle runs are recorded too (evidence that auto-start ran)', async () => {
    await run();
    const result = await runJobOnce(t.ctx, autoStartJob);
    const row = await t.ctx.db.selectFrom('job_runs').selectAll().where('run_id', '=', result.runId).executeTakeFirst();
    expect(row).toMatchObject({ job: AUTO_START_JOB, selected: 0, created: 0 });
  });
});

describe('sessiongate appointments:auto-start-sessions', () => {
  let cli: CliDatabase;
  beforeAll(async () => {
    cli = await cliDatabase();
  });
  afterAll(async () => cli?.close());

  async function fixtures(db: Db, types: string[]) {
    const ids: number[] = [];
    for (const [i, type] of types.entries()) {
      const p = await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P') returning id`.execute(db);
      const d = await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D') returning id`.execute(db);
      const a = await sql<{ id: number }>`
        insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
        values (${p.rows[0]!.id}, ${d.rows[0]!.id}, ${type}, 'confirmed', now() - make_interval(mins => ${10 - i}))
        returning id`.execute(db);
      ids.push(a.rows[0]!.id);
    }
    return ids;
  }

  it('--verbose prints one line per appointment; exit 1 when one failed; the run is recorded', async () => {
    const [text, video, bad] = await cli.db((db) => fixtures(db, ['text', 'video', 'smoke-signal']));
    const r = await cli.run(['appointments:auto-start-sessions', '--verbose']);
    expect(r.err).toBe('');
    expect(r.code).toBe(1);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(new RegExp(`^created  appointment ${text} → text_session:\\d+ \\(text\\)$`));
    expect(lines[1]).toMatch(new RegExp(`^created  appointment ${video} → call_session:\\d+ \\(video\\)$`));
    expect(lines[2]).toBe(`failed   appointment ${bad}: invalid_appointment_state`);
    expect(lines[3]).toMatch(/^auto-start run [0-9a-f-]{36}: 3 due, 3 attempted — 2 created, 0 skipped, 1 failed/);
    const runs = await cli.db((db) => db.selectFrom('job_runs').selectAll().where('job', '=', AUTO_START_JOB).execute());
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ created: 2, failed: 1, status: 'succeeded' });
    expect(runs[0]!.details).toMatchObject({ trigger: 'cli' });
  });

  it('--json (with --verbose, every appointment) and --limit', async () => {
    const ids = await cli.db((db) => fixtures(db, ['voice', 'audio', 'text']));
    const r = await cli.run(['appointments:auto-start-sessions', '--json', '--verbose', '--limit', '2']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    expect(out).toMatchObject({
      notifications_delivered: 4,
      status: 'succeeded',
      attempted_count: 2,
      created_count: 2,
      failed_count: 0,
      stopped_by: 'limit',
      trigger: 'cli',
    });
    expect(out.appointments.map((a: { appointment_id: number }) => a.appointment_id)).toEqual(ids.slice(0, 2));
    expect(out.appointments[0]).toMatchObject({ result: 'created', modality: 'voice', reason: null });
    expect(out.appointments[0].session_context).toMatch(/^call_session:\d+$/);
  });

  it('rejects a bad --limit with exit 3 (did not run)', async () => {
    for (const bad of ['0', '-1', 'ten', '1.5']) {
      const r = await cli.run(['appointments:auto-start-sessions', `--limit=${bad}`]);
      expect(r.code, bad).toBe(3);
      expect(r.err).toContain('--limit must be a positive whole number');
    }
  });
});
