/**
 * rollout:status and GET /api/v2/admin/rollout: per flag, what turning it now would block (from the
 * guard events and legacy-trigger runs inserted here), the verdict, the prescribed order.
 */
import { cliDatabase } from '../helpers/cli-run.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type { FlagName, FlagSet } from '../../src/config/flag-values.js';
import type { Executor, User } from '../../src/db/types.js';
import { rolloutStatus } from '../../src/modules/ops/rollout.js';
import type { FlagRollout, RolloutStatus } from '../../src/modules/ops/schemas.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

const OFF: FlagSet = {
  ENFORCE_SESSION_GATED_CHAT: false,
  ENFORCE_SESSION_GATED_BILLING: false,
  DISABLE_LEGACY_APPOINTMENT_TRIGGERS: false,
  ALLOW_LEGACY_APPOINTMENT_CHAT: false,
};
const CHAT_ON = { ...OFF, ENFORCE_SESSION_GATED_CHAT: true };
const CHAT_BILLING_ON = { ...CHAT_ON, ENFORCE_SESSION_GATED_BILLING: true };
const PHASE3 = { ...CHAT_BILLING_ON, DISABLE_LEGACY_APPOINTMENT_TRIGGERS: true };

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
  await sql`truncate guard_events, job_runs, appointment_conversions, messages, appointments, sessions restart identity cascade`.execute(
    t.ctx.db,
  );
});

async function appointment(db: Executor, status = 'completed', patientId = patient.id, doctorId = doctor.id): Promise<number> {
  const r = await sql<{ id: number }>`
    insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
    values (${patientId}, ${doctorId}, 'text', ${status}, now() - interval '3 days' - make_interval(secs => (random() * 1000000)::int))
    returning id`.execute(db);
  return r.rows[0]!.id;
}

async function guardEvent(
  db: Executor,
  e: { guard: string; operation: string; outcome: string; appointmentId: number; sessionId?: number; hoursAgo: number; n?: number },
) {
  await sql`
    insert into guard_events (guard, operation, outcome, enforced, appointment_id, session_id, user_id, created_at)
    select ${e.guard}, ${e.operation}, ${e.outcome}, ${e.outcome === 'blocked'}, ${e.appointmentId}, ${e.sessionId ?? null}, ${patient.id},
           now() - make_interval(secs => ${Math.round(e.hoursAgo * 3600)})
      from generate_series(1, ${e.n ?? 1})`.execute(db);
}

async function jobRun(db: Executor, job: string, r: { selected?: number; created?: number; status?: string; hoursAgo: number }) {
  await sql`
    insert into job_runs (run_id, job, started_at, finished_at, duration_ms, status, selected, created)
    values (gen_random_uuid(), ${job}, now() - make_interval(secs => ${Math.round(r.hoursAgo * 3600)}), now(), 5,
            ${r.status ?? 'succeeded'}, ${r.selected ?? 0}, ${r.created ?? 0})`.execute(db);
}

const flagOf = (s: RolloutStatus, f: FlagName): FlagRollout => s.flag_status.find((x) => x.flag === f)!;

describe('rolloutStatus', () => {
  it('phase 1 on an empty database: chat is the ready next step, later steps wait for the order', async () => {
    const s = await rolloutStatus(t.ctx.db, OFF);
    expect(s).toMatchObject({ phase: 1, phase_name: 'monitoring', flags: OFF });
    expect(s.order).toEqual({
      prescribed: ['ENFORCE_SESSION_GATED_CHAT', 'ENFORCE_SESSION_GATED_BILLING', 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS'],
      skipped_steps: [],
      skips_step: false,
      next_step: { flag: 'ENFORCE_SESSION_GATED_CHAT', set_to: true, verdict: 'ready', ready: true },
    });
    expect(flagOf(s, 'ENFORCE_SESSION_GATED_CHAT')).toMatchObject({ verdict: 'ready', ready: true, at_target: false, target: true });
    expect(flagOf(s, 'ENFORCE_SESSION_GATED_BILLING').verdict).toMatch(/^not ready: turn ENFORCE_SESSION_GATED_CHAT on first/);
    expect(flagOf(s, 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS').verdict).toMatch(
      /^not ready: turn ENFORCE_SESSION_GATED_CHAT and ENFORCE_SESSION_GATED_BILLING on first/,
    );
    // Legacy chat compatibility is already off: nothing to do for phase 3.
    expect(flagOf(s, 'ALLOW_LEGACY_APPOINTMENT_CHAT')).toMatchObject({
      value: false,
      target: false,
      at_target: true,
      verdict: 'done',
      ready: false,
    });
  });

  it('chat: would-block events over 24 h and 7 d by operation, distinct appointments, newest example → not ready', async () => {
    const db = t.ctx.db;
    const [a, b, c, d] = [await appointment(db), await appointment(db), await appointment(db), await appointment(db)];
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: a, hoursAgo: 5, n: 2 });
    await guardEvent(db, { guard: 'chat', operation: 'sendMessage', outcome: 'would_block', appointmentId: b, sessionId: 77, hoursAgo: 1 });
    await guardEvent(db, { guard: 'chat', operation: 'markAsRead', outcome: 'would_block', appointmentId: c, hoursAgo: 72 });
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: a, hoursAgo: 100 });
    // Outside 7 days, other outcomes, other guards: not evidence for this flag.
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: d, hoursAgo: 24 * 8 });
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'not_ready', appointmentId: d, hoursAgo: 1 });
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'allowed_legacy', appointmentId: d, hoursAgo: 1 });
    await guardEvent(db, { guard: 'billing', operation: 'end-session', outcome: 'would_block', appointmentId: d, hoursAgo: 1 });

    const s = await rolloutStatus(db, OFF);
    const chat = flagOf(s, 'ENFORCE_SESSION_GATED_CHAT');
    expect(chat.ready).toBe(false);
    expect(chat.evidence.last_24h).toEqual({
      events: 3,
      appointments: 2,
      by_operation: [
        { operation: 'getMessages', events: 2, appointments: 1 },
        { operation: 'sendMessage', events: 1, appointments: 1 },
      ],
    });
    expect(chat.evidence.last_7d.events).toBe(5);
    expect(chat.evidence.last_7d.appointments).toBe(3);
    expect(chat.evidence.last_7d.by_operation).toEqual([
      { operation: 'getMessages', events: 3, appointments: 1 },
      { operation: 'markAsRead', events: 1, appointments: 1 },
      { operation: 'sendMessage', events: 1, appointments: 1 },
    ]);
    expect(chat.evidence.newest).toMatchObject({ operation: 'sendMessage', appointment_id: b, session_id: 77, user_id: patient.id });
    expect(chat.verdict).toBe(
      `not ready: legacy chat requests on appointments that have a session would be refused with SESSION_CONTEXT_REQUIRED: ` +
        `3 in the last 24 h on 2 appointment(s), 5 in 7 d on 3 (newest: sendMessage, appointment ${b}, session 77 at ${chat.evidence.newest!.at})`,
    );
    expect(s.order.next_step).toMatchObject({ flag: 'ENFORCE_SESSION_GATED_CHAT', verdict: chat.verdict });
  });

  it('chat: a week without would-block events is ready; events 2–7 days old still are not', async () => {
    const db = t.ctx.db;
    const a = await appointment(db);
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: a, hoursAgo: 24 * 8 });
    expect(flagOf(await rolloutStatus(db, OFF), 'ENFORCE_SESSION_GATED_CHAT').verdict).toBe('ready');
    await guardEvent(db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: a, hoursAgo: 24 * 6 });
    const chat = flagOf(await rolloutStatus(db, OFF), 'ENFORCE_SESSION_GATED_CHAT');
    expect(chat.evidence.last_24h.events).toBe(0);
    expect(chat.verdict).toMatch(/^not ready: .*0 in the last 24 h on 0 appointment\(s\), 1 in 7 d on 1/);
  });

  it('billing: would-block events by endpoint once chat is on; blocked chat requests show as a note on chat', async () => {
    const db = t.ctx.db;
    const [a, b] = [await appointment(db), await appointment(db)];
    await guardEvent(db, { guard: 'billing', operation: 'end-session', outcome: 'would_block', appointmentId: a, hoursAgo: 2 });
    await guardEvent(db, {
      guard: 'billing',
      operation: 'process-deduction',
      outcome: 'would_block',
      appointmentId: b,
      hoursAgo: 30,
      n: 2,
    });
    await guardEvent(db, { guard: 'chat', operation: 'sendMessage', outcome: 'blocked', appointmentId: a, hoursAgo: 1, n: 4 });

    const s = await rolloutStatus(db, CHAT_ON);
    expect(s).toMatchObject({ phase: 2, order: { skips_step: false, next_step: { flag: 'ENFORCE_SESSION_GATED_BILLING', set_to: true } } });
    const billing = flagOf(s, 'ENFORCE_SESSION_GATED_BILLING');
    expect(billing.evidence.last_24h).toMatchObject({ events: 1, appointments: 1 });
    expect(billing.evidence.last_7d.by_operation).toEqual([
      { operation: 'process-deduction', events: 2, appointments: 1 },
      { operation: 'end-session', events: 1, appointments: 1 },
    ]);
    expect(billing.verdict).toMatch(
      /^not ready: legacy billing requests .* SESSION_BILLING_REQUIRED: 1 in the last 24 h on 1 appointment\(s\), 3 in 7 d on 2/,
    );
    expect(billing.reasons).toHaveLength(1); // chat is on: the order is respected
    const chat = flagOf(s, 'ENFORCE_SESSION_GATED_CHAT');
    expect(chat).toMatchObject({ verdict: 'done', at_target: true, blocked_24h: 4 });
    expect(chat.notes[0]).toContain('4 request(s) refused in the last 24 h');

    await sql`delete from guard_events where guard = 'billing'`.execute(db);
    expect(flagOf(await rolloutStatus(db, CHAT_ON), 'ENFORCE_SESSION_GATED_BILLING').verdict).toBe('ready');
  });

  it('detects a flag set that skips a step of the prescribed order', async () => {
    const s = await rolloutStatus(t.ctx.db, { ...OFF, ENFORCE_SESSION_GATED_BILLING: true });
    expect(s.phase).toBe(2);
    expect(s.order).toMatchObject({
      skips_step: true,
      skipped_steps: ['ENFORCE_SESSION_GATED_CHAT'],
      next_step: { flag: 'ENFORCE_SESSION_GATED_CHAT' },
    });
    const s2 = await rolloutStatus(t.ctx.db, { ...OFF, DISABLE_LEGACY_APPOINTMENT_TRIGGERS: true });
    expect(s2.order.skipped_steps).toEqual(['ENFORCE_SESSION_GATED_CHAT', 'ENFORCE_SESSION_GATED_BILLING']);
  });

  it('legacy triggers: process-sessions runs and open legacy appointments block; activate-booked runs are a note', async () => {
    const db = t.ctx.db;
    await jobRun(db, 'appointments:activate-booked', { selected: 4, created: 4, hoursAgo: 3 });
    await jobRun(db, 'appointments:activate-booked', { hoursAgo: 1 }); // idle
    await jobRun(db, 'appointments:process-sessions', { status: 'skipped', selected: 9, hoursAgo: 1 }); // disabled run
    let s = await rolloutStatus(db, CHAT_BILLING_ON);
    let legacy = flagOf(s, 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS');
    expect(legacy.evidence.last_24h).toEqual({
      events: 1,
      appointments: 4,
      by_operation: [{ operation: 'appointments:activate-booked', events: 1, appointments: 4 }],
    });
    expect(legacy.evidence.newest).toMatchObject({ operation: 'appointments:activate-booked', appointments: 4 });
    expect(legacy.evidence.open_legacy_appointments).toBe(0);
    expect(legacy.verdict).toBe('ready');
    expect(legacy.notes[0]).toMatch(/appointments:activate-booked started 4 appointment\(s\) in 1 run\(s\)/);

    await jobRun(db, 'appointments:process-sessions', { selected: 2, hoursAgo: 50 });
    s = await rolloutStatus(db, CHAT_BILLING_ON);
    legacy = flagOf(s, 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS');
    expect(legacy.evidence.last_7d.events).toBe(2);
    expect(legacy.verdict).toBe(
      'not ready: appointments:process-sessions still closes legacy appointments: 0 run(s) / 0 appointment(s) in the last 24 h, 1 / 2 in 7 d',
    );

    await sql`delete from job_runs`.execute(db);
    await appointment(db, 'in_progress');
    legacy = flagOf(await rolloutStatus(db, CHAT_BILLING_ON), 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS');
    expect(legacy.evidence.open_legacy_appointments).toBe(1);
    expect(legacy.verdict).toMatch(/^not ready: 1 legacy appointment\(s\) started without a session are still open/);
  });

  it('legacy chat compatibility: on, it is judged by allowed_legacy events; phase 3 has no next step', async () => {
    const db = t.ctx.db;
    const a = await appointment(db);
    await guardEvent(db, { guard: 'chat', operation: 'sendMessage', outcome: 'allowed_legacy', appointmentId: a, hoursAgo: 3, n: 2 });
    const on = { ...PHASE3, ALLOW_LEGACY_APPOINTMENT_CHAT: true };
    let s = await rolloutStatus(db, on);
    expect(s.phase).toBe(2);
    expect(s.order.next_step).toMatchObject({ flag: 'ALLOW_LEGACY_APPOINTMENT_CHAT', set_to: false });
    const allow = flagOf(s, 'ALLOW_LEGACY_APPOINTMENT_CHAT');
    expect(allow.verdict).toMatch(
      /^not ready: pre-session chat on appointments without a session would be refused with SESSION_NOT_READY: 2 in the last 24 h on 1/,
    );

    await sql`delete from guard_events`.execute(db);
    expect(flagOf(await rolloutStatus(db, on), 'ALLOW_LEGACY_APPOINTMENT_CHAT').verdict).toBe('ready');

    s = await rolloutStatus(db, PHASE3);
    expect(s).toMatchObject({ phase: 3, phase_name: 'full', order: { next_step: null, skips_step: false } });
    expect(s.flag_status.map((f) => f.verdict)).toEqual(['done', 'done', 'done', 'done']);
  });
});

describe('GET /api/v2/admin/rollout', () => {
  it('returns the same status as the service, to admins only', async () => {
    const a = await appointment(t.ctx.db);
    await guardEvent(t.ctx.db, { guard: 'chat', operation: 'getMessages', outcome: 'would_block', appointmentId: a, hoursAgo: 1 });
    t.flags.set({ ENFORCE_SESSION_GATED_CHAT: false });
    const admin = await t.newAdmin();
    const res = await t.app.inject({ url: '/api/v2/admin/rollout', headers: await t.auth(admin) });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.success).toBe(true);
    const direct = await rolloutStatus(t.ctx.db, await t.flags.current());
    expect({ ...body.data, generated_at: null }).toEqual({ ...direct, generated_at: null });
    expect(flagOf(body.data, 'ENFORCE_SESSION_GATED_CHAT').verdict).toMatch(/^not ready: /);

    expect((await t.app.inject({ url: '/api/v2/admin/rollout' })).statusCode).toBe(401);
    expect((await t.app.inject({ url: '/api/v2/admin/rollout', headers: await t.auth(patient) })).statusCode).toBe(403);
  });
});

// --- the CLI, against its own database (PGlite cannot open the harness's data directory twice)

describe('sessiongate rollout:status', () => {
  it('prints the same status as JSON and as text, with the flags of its environment', async () => {
    const cli = await cliDatabase({ LOG_LEVEL: 'error', ENFORCE_SESSION_GATED_CHAT: 'yes' });
    await cli.db(async (db) => {
      const p = (await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P') returning id`.execute(db)).rows[0]!.id;
      const d = (await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D') returning id`.execute(db)).rows[0]!.id;
      const a = await appointment(db, 'completed', p, d);
      await guardEvent(db, {
        guard: 'billing',
        operation: 'process-payment',
        outcome: 'would_block',
        appointmentId: a,
        hoursAgo: 2,
      });
    });
    const run = (argv: string[]) => cli.run(argv);
    try {
      const json = await run(['rollout:status', '--json']);
      expect(json.err).toBe('');
      expect(json.code).toBe(0);
      const s = JSON.parse(json.out) as RolloutStatus;
      expect(s).toMatchObject({ phase: 2, flags: { ...CHAT_ON } });
      expect(s.order.next_step).toMatchObject({ flag: 'ENFORCE_SESSION_GATED_BILLING' });
      const billing = flagOf(s, 'ENFORCE_SESSION_GATED_BILLING');
      expect(billing.evidence.last_24h.by_operation).toEqual([{ operation: 'process-payment', events: 1, appointments: 1 }]);
      expect(billing.verdict).toMatch(/^not ready: /);

      const text = await run(['rollout:status']);
      expect(text.code).toBe(0);
      expect(text.out).toContain('Rollout phase 2 (gradual)');
      expect(text.out).toContain('Current flags skip a step: no');
      expect(text.out).toContain('ENFORCE_SESSION_GATED_BILLING=false (phase 3: true)');
      expect(text.out).toContain(`  verdict: ${billing.verdict}`);
      expect(text.out).toMatch(/process-payment\s+24 h: 1 \/ 1 appts\s+7 d: 1 \/ 1 appts/);

      const help = await run(['rollout:status', '--help']);
      expect(help.out).toContain('sessiongate rollout:status [--json]');
    } finally {
      await cli.close();
    }
  });
});
