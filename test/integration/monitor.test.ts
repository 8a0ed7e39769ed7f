/**
 * appointments:monitor-sessions: the numbers come from the database rows (appointments,
 * appointment_conversions, guard_events, job_runs) — inserted directly here to produce each
 * situation — and the levels follow the alert rules (ops/prometheus/alerts.yml).
 */
import { cliDatabase } from '../helpers/cli-run.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type { FlagSet } from '../../src/config/flag-values.js';
import type { Executor, User } from '../../src/db/types.js';
import { backlogLevel, errorRate, errorRateLevel, exitCodeFor, monitorSnapshot } from '../../src/modules/ops/monitor.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

const OFF: FlagSet = {
  ENFORCE_SESSION_GATED_CHAT: false,
  ENFORCE_SESSION_GATED_BILLING: false,
  DISABLE_LEGACY_APPOINTMENT_TRIGGERS: false,
  ALLOW_LEGACY_APPOINTMENT_CHAT: false,
};
const CONFIG = { autoStartMaxLatenessMinutes: 1440, autoStartMaxAttempts: 5, staleAppointmentDays: 7 };

let t: TestHarness;
let patient: User;
let doctor: User;

beforeAll(async () => {
  t = await createHarness();
  patient = await t.newPatient();
  doctor = await t.newDoctor();
});
afterAll(async () => t?.close());

beforeEach(async () => {
  await resetOpsTables(t.ctx.db);
});

async function resetOpsTables(db: Executor) {
  await sql`truncate appointment_conversions, guard_events, job_runs, notification_outbox, notifications, messages, appointments, sessions restart identity cascade`.execute(
    db,
  );
}

/**
 * `count` confirmed appointments without a session, scheduled `minutesAgo` minutes ago (one
 * second apart, so the doctor's one-appointment-per-slot index holds).
 */
async function dueAppointments(
  db: Executor,
  count: number,
  minutesAgo: number,
  extra: { attempts?: number; status?: string; doctorId?: number; patientId?: number } = {},
) {
  await sql`
    insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at, conversion_attempts)
    select ${extra.patientId ?? patient.id}, ${extra.doctorId ?? doctor.id}, 'text', ${extra.status ?? 'confirmed'},
           now() - make_interval(mins => ${minutesAgo}) - make_interval(secs => i), ${extra.attempts ?? 0}
      from generate_series(1, ${count}) as i`.execute(db);
}

async function anyAppointmentId(db: Executor, patientId = patient.id, doctorId = doctor.id): Promise<number> {
  const r = await sql<{ id: number }>`
    insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
    values (${patientId}, ${doctorId}, 'text', 'completed', now() - interval '30 days' - make_interval(secs => (random() * 100000)::int))
    returning id`.execute(db);
  return r.rows[0]!.id;
}

/** `count` conversion rows with `result`, `secondsAgo` seconds old. */
async function conversions(
  db: Executor,
  appointmentId: number,
  result: 'created' | 'failed' | 'skipped',
  count: number,
  secondsAgo: number,
) {
  await sql`
    insert into appointment_conversions (appointment_id, source, result, failure_reason, created_at)
    select ${appointmentId}, 'auto_start', ${result}, ${result === 'failed' ? 'unknown_error' : null},
           now() - make_interval(secs => ${secondsAgo})
      from generate_series(1, ${count})`.execute(db);
}

async function guardEvent(
  db: Executor,
  e: { guard: string; operation: string; outcome: string; appointmentId?: number; hoursAgo?: number; n?: number },
) {
  await sql`
    insert into guard_events (guard, operation, outcome, enforced, appointment_id, created_at)
    select ${e.guard}, ${e.operation}, ${e.outcome}, ${e.outcome === 'blocked'}, ${e.appointmentId ?? null},
           now() - make_interval(secs => ${Math.round((e.hoursAgo ?? 1) * 3600)})
      from generate_series(1, ${e.n ?? 1})`.execute(db);
}

async function jobRun(
  db: Executor,
  job: string,
  r: { selected?: number; created?: number; failed?: number; status?: string; hoursAgo?: number },
) {
  await sql`
    insert into job_runs (run_id, job, started_at, finished_at, duration_ms, status, selected, created, failed)
    values (gen_random_uuid(), ${job}, now() - make_interval(secs => ${Math.round((r.hoursAgo ?? 1) * 3600)}), now(), 12,
            ${r.status ?? 'succeeded'}, ${r.selected ?? 0}, ${r.created ?? 0}, ${r.failed ?? 0})`.execute(db);
}

describe('levels (pure)', () => {
  it('backlog: warning from 10, critical from 50', () => {
    expect([0, 9, 10, 49, 50, 500].map(backlogLevel)).toEqual(['ok', 'ok', 'warning', 'warning', 'critical', 'critical']);
  });
  it('error rate: failed / (created + failed); warning above 2 % (10 min), critical above 10 % (5 min)', () => {
    expect(errorRate(0, 0)).toBe(0);
    expect(errorRate(98, 2)).toBeCloseTo(0.02);
    expect(errorRateLevel(0.02, 0)).toBe('ok');
    expect(errorRateLevel(0.0201, 0)).toBe('warning');
    expect(errorRateLevel(0.05, 0.1)).toBe('warning');
    expect(errorRateLevel(0.05, 0.1001)).toBe('critical');
    expect(errorRateLevel(0, 0.5)).toBe('critical');
    expect(['ok', 'warning', 'critical'].map((l) => exitCodeFor(l as 'ok'))).toEqual([0, 1, 2]);
  });
});

describe('monitorSnapshot', () => {
  it('is all zeros and ok on an empty database, and reports flags and phase', async () => {
    const flags = { ...OFF, ENFORCE_SESSION_GATED_CHAT: true };
    const s = await monitorSnapshot(t.ctx.db, flags, CONFIG);
    expect(s).toMatchObject({
      phase: 2,
      phase_name: 'gradual',
      flags,
      level: 'ok',
      due: { count: 0, given_up: 0, retrying: 0, due_for_5m: 0, beyond_lateness: 0, oldest_scheduled_at: null },
      conversions: { last_1m: { created: 0, failed: 0 }, last_10m: { created: 0, failed: 0 }, last_created_at: null },
      error_rate: { last_5m: 0, last_10m: 0 },
      backlog: { level: 'ok', count: 0 },
      error_rate_alert: { level: 'ok', attempted_10m: 0 },
      stalled: false,
      guards: { chat: { would_block: 0, blocked: 0 }, billing: { would_block: 0, blocked: 0 } },
    });
    expect(s.legacy_triggers.commands.map((c) => c.command_name)).toEqual([
      'appointments:activate-booked',
      'appointments:process-sessions',
    ]);
  });

  it('counts due appointments by the database clock, within the lateness window, given-up ones separately', async () => {
    const db = t.ctx.db;
    await dueAppointments(db, 2, 1); // due, not yet for 5 minutes
    await dueAppointments(db, 3, 30); // due for 30 minutes
    await dueAppointments(db, 1, 60, { attempts: 5 }); // auto-start gave up
    await dueAppointments(db, 1, 20, { attempts: 2 }); // retrying with backoff
    await dueAppointments(db, 4, 60 * 30); // older than the 24 h lateness
    await dueAppointments(db, 2, -30); // in the future
    await dueAppointments(db, 2, 10, { status: 'pending' });
    await dueAppointments(db, 2, 10, { status: 'cancelled' });
    // Linked to a session: not due whatever its status says.
    const linked = await t.newAppointment({ patient, scheduled_at: new Date(Date.now() - 15 * 60_000) });
    const session = await db
      .insertInto('sessions')
      .values({
        kind: 'text',
        modality: 'text',
        source: 'APPOINTMENT',
        appointment_id: linked.id,
        patient_id: patient.id,
        doctor_id: linked.doctor_id,
        status: 'waiting_for_doctor',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db.updateTable('appointments').set({ session_id: session.id }).where('id', '=', linked.id).execute();

    const s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.due).toMatchObject({
      count: 7,
      given_up: 1,
      retrying: 1,
      due_for_5m: 5,
      beyond_lateness: 4,
      max_lateness_minutes: 1440,
      max_attempts: 5,
    });
    const oldest = new Date(s.due.oldest_scheduled_at!).getTime();
    expect(Date.now() - oldest).toBeGreaterThan(59 * 60_000);
    expect(Date.now() - oldest).toBeLessThan(62 * 60_000);
    // A shorter lateness moves the 30- and 60-minute-old ones out of auto-start's window.
    const short = await monitorSnapshot(db, OFF, { ...CONFIG, autoStartMaxLatenessMinutes: 25 });
    expect(short.due).toMatchObject({ count: 3, given_up: 0, due_for_5m: 1, beyond_lateness: 8 });
    // Nothing converted while appointments have been due for 5 minutes: stalled.
    expect(s.stalled).toBe(true);
  });

  it('backlog is warning at 10 appointments due for 5 minutes, critical at 50; a fresh spike is not a backlog', async () => {
    const db = t.ctx.db;
    await dueAppointments(db, 9, 6);
    await dueAppointments(db, 80, 1);
    let s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.due.count).toBe(89);
    expect(s.backlog).toMatchObject({ level: 'ok', count: 89, sustained_count: 9 });
    expect(s.level).toBe('ok');

    await dueAppointments(db, 1, 7, { doctorId: (await t.newDoctor()).id });
    s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.backlog).toMatchObject({ level: 'warning', sustained_count: 10 });
    expect(s.level).toBe('warning');

    await dueAppointments(db, 40, 8, { doctorId: (await t.newDoctor()).id });
    s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.backlog).toMatchObject({ level: 'critical', sustained_count: 50 });
    expect(s.level).toBe('critical');
  });

  it('counts conversions in the last 1, 5 and 10 minutes and derives the error-rate level', async () => {
    const db = t.ctx.db;
    const a = await anyAppointmentId(db);
    // 6–9 minutes ago: 97 created, 3 failed → 3 % over 10 minutes (warning); nothing in 5 minutes.
    await conversions(db, a, 'created', 97, 8 * 60);
    await conversions(db, a, 'failed', 3, 7 * 60);
    await conversions(db, a, 'skipped', 4, 7 * 60);
    // Older than 10 minutes: ignored.
    await conversions(db, a, 'failed', 50, 11 * 60);
    let s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.conversions.last_10m).toEqual({ created: 97, failed: 3, skipped: 4 });
    expect(s.conversions.last_5m).toEqual({ created: 0, failed: 0, skipped: 0 });
    expect(s.error_rate.last_10m).toBeCloseTo(0.03);
    expect(s.error_rate_alert).toMatchObject({ level: 'warning', attempted_10m: 100, failed_10m: 3 });
    expect(s.level).toBe('warning');
    expect(s.conversions.last_created_at).not.toBeNull();

    // Last 5 minutes: 9 created, 1 failed → exactly 10 %: not above the critical threshold.
    await conversions(db, a, 'created', 8, 3 * 60);
    await conversions(db, a, 'failed', 1, 3 * 60);
    await conversions(db, a, 'created', 1, 20);
    s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.conversions.last_1m).toEqual({ created: 1, failed: 0, skipped: 0 });
    expect(s.conversions.last_5m).toEqual({ created: 9, failed: 1, skipped: 0 });
    expect(s.error_rate.last_5m).toBeCloseTo(0.1);
    expect(s.error_rate_alert.level).toBe('warning');

    // One more failure within the last minute → 2 / 11 > 10 % over 5 minutes: critical.
    await conversions(db, a, 'failed', 1, 10);
    s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.conversions.last_1m).toEqual({ created: 1, failed: 1, skipped: 0 });
    expect(s.error_rate_alert).toMatchObject({ level: 'critical', attempted_5m: 11, failed_5m: 2 });
    expect(s.level).toBe('critical');
  });

  it('a 2 % error rate is still ok (the threshold is "above")', async () => {
    const a = await anyAppointmentId(t.ctx.db);
    await conversions(t.ctx.db, a, 'created', 98, 8 * 60);
    await conversions(t.ctx.db, a, 'failed', 2, 8 * 60);
    const s = await monitorSnapshot(t.ctx.db, OFF, CONFIG);
    expect(s.error_rate.last_10m).toBeCloseTo(0.02);
    expect(s.error_rate_alert.level).toBe('ok');
  });

  it('counts guard events of the last 24 h by outcome and operation for chat and billing', async () => {
    const db = t.ctx.db;
    const [a1, a2, a3] = [await anyAppointmentId(db), await anyAppointmentId(db), await anyAppointmentId(db)];
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: a1, n: 2 });
    await guardEvent(db, { guard: 'chat', operation: 'sendMessage', outcome: 'would_block', appointmentId: a2 });
    await guardEvent(db, { guard: 'chat', operation: 'sendMessage', outcome: 'blocked', appointmentId: a2 });
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'not_ready', appointmentId: a3 });
    await guardEvent(db, { guard: 'chat', operation: 'markAsRead', outcome: 'allowed_legacy', appointmentId: a3, hoursAgo: 23 });
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: a1, hoursAgo: 25, n: 5 });
    await guardEvent(db, { guard: 'billing', operation: 'end-session', outcome: 'would_block', appointmentId: a1 });
    await guardEvent(db, { guard: 'billing', operation: 'process-deduction', outcome: 'blocked', appointmentId: a2, n: 3 });
    await guardEvent(db, {
      guard: 'legacy_trigger',
      operation: 'appointments:activate-booked',
      outcome: 'allowed_legacy',
      appointmentId: a1,
    });

    const { guards } = await monitorSnapshot(db, OFF, CONFIG);
    expect(guards.window_hours).toBe(24);
    expect(guards.chat).toMatchObject({ would_block: 3, blocked: 1, allowed_legacy: 1, not_ready: 1, appointments: 3 });
    expect(guards.chat.by_operation).toEqual(
      expect.arrayContaining([
        { operation: 'getMessages', would_block: 2, blocked: 0, allowed_legacy: 0, not_ready: 1 },
        { operation: 'sendMessage', would_block: 1, blocked: 1, allowed_legacy: 0, not_ready: 0 },
        { operation: 'markAsRead', would_block: 0, blocked: 0, allowed_legacy: 1, not_ready: 0 },
      ]),
    );
    expect(guards.chat.by_operation).toHaveLength(3);
    expect(guards.billing).toMatchObject({ would_block: 1, blocked: 3, allowed_legacy: 0, not_ready: 0, appointments: 2 });
    expect(guards.billing.by_operation).toHaveLength(2);
  });

  it('reports legacy trigger runs of the last 24 h from job_runs', async () => {
    const db = t.ctx.db;
    await jobRun(db, 'appointments:activate-booked', { selected: 3, created: 3, hoursAgo: 2 });
    await jobRun(db, 'appointments:activate-booked', { hoursAgo: 1 }); // idle run
    await jobRun(db, 'appointments:activate-booked', { selected: 9, created: 9, hoursAgo: 30 }); // too old
    await jobRun(db, 'appointments:process-sessions', { status: 'failed', hoursAgo: 0.5 });
    await jobRun(db, 'appointments:auto-start-sessions', { selected: 50, created: 50 }); // not legacy
    const { legacy_triggers } = await monitorSnapshot(db, OFF, CONFIG);
    const [activate, process] = legacy_triggers.commands;
    expect(activate).toMatchObject({
      command_name: 'appointments:activate-booked',
      runs: 2,
      runs_processing: 1,
      appointments_processed: 3,
      failed_runs: 0,
    });
    expect(Date.now() - new Date(activate!.last_run_at!).getTime()).toBeLessThan(61 * 60_000);
    expect(process).toMatchObject({
      command_name: 'appointments:process-sessions',
      runs: 1,
      runs_processing: 0,
      appointments_processed: 0,
      failed_runs: 1,
    });
  });

  it('is not stalled while sessions are being created', async () => {
    const db = t.ctx.db;
    await dueAppointments(db, 2, 10);
    const a = await anyAppointmentId(db);
    await conversions(db, a, 'created', 1, 60);
    expect((await monitorSnapshot(db, OFF, CONFIG)).stalled).toBe(false);
  });
});

describe('deferred, stale and ended sessions', () => {
  async function session(db: Executor, s: { patientId: number; status: string; endReason?: string | null; endedHoursAgo?: number }) {
    const r = await sql<{ id: number }>`
      insert into sessions (kind, modality, source, patient_id, doctor_id, status, activated_at, ended_at, end_reason)
      values ('text', 'text', 'INSTANT', ${s.patientId}, ${doctor.id}, ${s.status}, now() - interval '2 days',
              ${s.endedHoursAgo === undefined ? null : sql`now() - make_interval(secs => ${Math.round(s.endedHoursAgo * 3600)})`},
              ${s.endReason ?? null})
      returning id`.execute(db);
    return r.rows[0]!.id;
  }

  it('counts deferred appointments apart (not a stalled worker), stale ones past the lateness, settling and sessions ended by reason', async () => {
    const db = t.ctx.db;
    const free = await t.newPatient();
    // The patient is in a live session; their appointment due 10 minutes ago was deferred.
    await session(db, { patientId: patient.id, status: 'active' });
    await dueAppointments(db, 1, 10);
    // Marked deferred earlier, but that patient is free now: plain due (the next run converts it).
    await dueAppointments(db, 1, 1, { patientId: free.id });
    await sql`update appointments set last_conversion_error = 'deferred_patient_busy'`.execute(db);
    // Confirmed, never converted, past the 24 h lateness: stale (missed after 7 days).
    await dueAppointments(db, 2, 60 * 48, { patientId: free.id, doctorId: (await t.newDoctor()).id });
    const a = await anyAppointmentId(db);
    await sql`
      insert into appointment_conversions (appointment_id, source, result, failure_reason, created_at)
      values (${a}, 'auto_start', 'deferred', 'deferred_patient_busy', now() - interval '1 hour'),
             (${a}, 'auto_start', 'deferred', 'deferred_patient_busy', now() - interval '2 hours'),
             (${a}, 'auto_start', 'deferred', 'deferred_patient_busy', now() - interval '30 hours'),
             (${a}, 'settle', 'missed', 'stale_confirmed', now() - interval '3 hours'),
             (${a}, 'settle', 'expired', 'never_confirmed', now() - interval '4 hours'),
             (${a}, 'settle', 'expired', 'never_confirmed', now() - interval '5 hours'),
             (${a}, 'settle', 'missed', 'stale_confirmed', now() - interval '40 hours')`.execute(db);
    for (const [reason, hoursAgo] of [
      ['inactive', 1],
      ['inactive', 2],
      ['time_limit', 3],
      ['disconnected', 23],
      ['inactive', 30], // outside the window
    ] as const) {
      await session(db, { patientId: free.id, status: 'ended', endReason: reason, endedHoursAgo: hoursAgo });
    }
    await session(db, { patientId: free.id, status: 'expired', endReason: 'no_show', endedHoursAgo: 4 });
    await session(db, { patientId: free.id, status: 'ended', endReason: null, endedHoursAgo: 5 });

    const s = await monitorSnapshot(db, OFF, CONFIG);
    expect(s.deferred).toMatchObject({ reason: 'deferred_patient_busy', waiting: 1, window_hours: 24, deferrals: 2, appointments: 1 });
    expect(Date.now() - new Date(s.deferred.oldest_scheduled_at!).getTime()).toBeGreaterThan(9 * 60_000);
    expect(s.stale).toMatchObject({ count: 2, lateness_minutes: 1440, missed_after_days: 7, missed: 1, pending_expired: 2 });
    expect(s.due).toMatchObject({ count: 2, due_for_5m: 1, beyond_lateness: 2 });
    expect(s.sessions_ended).toEqual({
      window_hours: 24,
      total: 6,
      by_reason: [
        { end_reason: 'inactive', count: 2 },
        { end_reason: 'disconnected', count: 1 },
        { end_reason: 'no_show', count: 1 },
        { end_reason: 'time_limit', count: 1 },
        { end_reason: 'unknown', count: 1 },
      ],
    });
    // The only appointment due for 5 minutes waits for its patient: the worker is not stalled.
    expect(s.stalled).toBe(false);
    await dueAppointments(db, 1, 8, { patientId: free.id });
    expect((await monitorSnapshot(db, OFF, CONFIG)).stalled).toBe(true);
  });
});

// --- the CLI, against its own database (PGlite cannot open the harness's data directory twice)

describe('sessiongate appointments:monitor-sessions', () => {
  it('prints the snapshot as a table or JSON, and --alert exits 0 / 1 / 2 by level', async () => {
    const cli = await cliDatabase({ LOG_LEVEL: 'error', ENFORCE_SESSION_GATED_CHAT: 'true' });
    const fixtures = (fn: (db: Executor, p: number, d: number) => Promise<void>) =>
      cli.db(async (db) => {
        const p = await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P') returning id`.execute(db);
        const d = await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D') returning id`.execute(db);
        await fn(db, p.rows[0]!.id, d.rows[0]!.id);
      });
    const run = (argv: string[]) => cli.run(argv);
    try {
      let r = await run(['appointments:monitor-sessions', '--alert']);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toContain('Backlog:    OK');
      expect(r.out).toContain('Rollout phase 2 (gradual)');
      expect(r.out).toMatch(/Due now\s+0/);
      expect(r.out).toMatch(/Deferred now\s+0\s+\(deferred_patient_busy/);
      expect(r.out).toMatch(/Stale\s+0\s+\(confirmed, past the \d+-min lateness/);
      expect(r.out).toContain('Sessions ended, last 24 h: 0');

      await fixtures((db, p, d) => dueAppointments(db, 12, 10, { patientId: p, doctorId: d }));
      r = await run(['appointments:monitor-sessions', '--json']);
      expect(r.code).toBe(0); // without --alert the exit code does not follow the level
      const snap = JSON.parse(r.out);
      expect(snap).toMatchObject({ phase: 2, level: 'warning', due: { count: 12, due_for_5m: 12 }, backlog: { level: 'warning' } });
      expect(snap.flags.ENFORCE_SESSION_GATED_CHAT).toBe(true);
      expect(snap).toMatchObject({
        deferred: { waiting: 0, deferrals: 0 },
        stale: { count: 0, missed_after_days: 7 },
        sessions_ended: { total: 0, by_reason: [] },
      });

      await fixtures(async (db, p, d) => {
        await sql`
          insert into sessions (kind, modality, source, patient_id, doctor_id, status, activated_at, ended_at, end_reason)
          select 'text', 'text', 'INSTANT', ${p}, ${d}, 'ended', now() - interval '1 hour', now() - make_interval(mins => i),
                 case when i = 1 then 'time_limit' else 'inactive' end
            from generate_series(1, 3) as i`.execute(db);
      });
      r = await run(['appointments:monitor-sessions', '--alert']);
      expect(r.code).toBe(1);
      expect(r.out).toContain('Sessions ended, last 24 h: 3');
      expect(r.out).toMatch(/inactive\s+2/);
      expect(r.out).toMatch(/time_limit\s+1/);
      expect(r.out).toContain('Backlog:    WARNING — 12 due for >= 5 min');

      await fixtures(async (db, p, d) => {
        await dueAppointments(db, 40, 10, { patientId: p, doctorId: d });
      });
      r = await run(['appointments:monitor-sessions', '--alert', '--json']);
      expect(r.code).toBe(2);
      expect(JSON.parse(r.out).backlog).toMatchObject({ level: 'critical', sustained_count: 52 });

      r = await run(['appointments:monitor-sessions', '--bogus']);
      expect(r.code).toBe(3);
    } finally {
      await cli.close();
    }
  }, 120_000);
});
