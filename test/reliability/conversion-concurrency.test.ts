/**
 * One session per appointment under real concurrency, on PostgreSQL (see docs/reliability.md):
 *  - 8 auto-start processes and a recovery --execute at the same moment over 5,000 due
 *    appointments → exactly 5,000 sessions, each appointment linked to its own, zero failures,
 *    and every record (job runs, conversion rows, outbox, notifications) adds up;
 *  - auto-start and recovery racing start-session requests for the same appointments → one
 *    session each, every request answered with that session.
 *
 * The start is synchronised without any test hook in the product: the test holds
 * `LOCK TABLE appointment_conversions IN SHARE MODE`, which every conversion statement needs to
 * pass (it inserts conversion rows), waits until all nine processes are queued behind it, and
 * releases it — they then all claim at once.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAutoStart } from '../../src/modules/jobs/auto-start.js';
import { executeRecovery, parseLookback, selectRecoveryCandidates } from '../../src/modules/sessions/recovery.js';
import { upsertPlan } from '../../src/modules/users/service.js';
import { createHarness, TEST_JWT_SECRET, type TestHarness } from '../helpers/app.js';
import { isPostgres } from '../helpers/db.js';
import { spawnCli, type Spawned } from '../helpers/process.js';
import { assertLinkInvariants, dueAppointments } from '../helpers/conversion-fixtures.js';

describe.skipIf(!isPostgres)('conversion under concurrency (PostgreSQL)', () => {
  let t: TestHarness;
  beforeAll(async () => {
    t = await createHarness({ env: { DB_POOL_SIZE: '30' } });
  });
  afterAll(async () => t?.close());

  it(
    '8 auto-start processes + recovery --execute over 5,000 due appointments: exactly one session each',
    { timeout: 150_000 },
    async () => {
      const N = 5000;
      const ids = await dueAppointments(t.ctx.db, N, 'race');
      const env = {
        DATABASE_URL: t.database.databaseUrl!,
        JWT_SECRET: TEST_JWT_SECRET,
        LOG_LEVEL: 'warn',
        AUTO_START_BATCH_SIZE: '100',
        DB_POOL_SIZE: '2',
      };
      const gate = await t.ctx.database.pool!.connect();
      const procs: Spawned[] = [];
      try {
        await gate.query('begin');
        await gate.query('lock table appointment_conversions in share mode');
        for (let i = 0; i < 8; i++) procs.push(spawnCli(['appointments:auto-start-sessions', '--limit', '100000', '--json'], env));
        procs.push(spawnCli(['appointments:recover-sessions', '--execute', '--yes', '--lookback=24h', `--limit=${N}`, '--json'], env));
        // All nine queue behind the table lock (each is about to convert its first batch).
        const deadline = Date.now() + 90_000;
        for (;;) {
          const w = await t.ctx.database.pool!.query<{ n: string }>(
            `select count(distinct l.pid) as n from pg_locks l join pg_class c on c.oid = l.relation
            where c.relname = 'appointment_conversions' and not l.granted`,
          );
          if (Number(w.rows[0]!.n) >= 9) break;
          const exited = procs.filter((p) => p.child.exitCode !== null);
          if (exited.length > 0) throw new Error(`a process exited before the start: ${exited.map((p) => p.stderr()).join('\n')}`);
          if (Date.now() > deadline) throw new Error(`only ${w.rows[0]!.n} of 9 processes reached the start`);
          await new Promise((r) => setTimeout(r, 100));
        }
        await gate.query('commit');
      } finally {
        gate.release();
      }
      const codes = await Promise.all(procs.map((p) => p.exited));
      const outputs = procs.map((p) => ({ out: p.stdout(), err: p.stderr() }));
      expect(codes, JSON.stringify(outputs.map((o) => o.err).filter(Boolean))).toEqual(Array(9).fill(0));
      const workers = outputs
        .slice(0, 8)
        .map((o) => JSON.parse(o.out) as { created_count: number; failed_count: number; skipped_count: number });
      const recovery = JSON.parse(outputs[8]!.out) as { counts: { created: number; skipped: number; failed: number } };

      // Exactly one session per appointment, each linked to its own.
      const s = await sql<{ sessions: number; appts: number; linked: number }>`
      select count(*)::int as sessions, count(distinct s.appointment_id)::int as appts,
             count(*) filter (where a.session_id = s.id and a.status = 'in_progress')::int as linked
        from sessions s join appointments a on a.id = s.appointment_id`.execute(t.ctx.db);
      expect(s.rows[0]).toEqual({ sessions: N, appts: N, linked: N });
      const left = await t.ctx.db.selectFrom('appointments').select('id').where('id', 'in', ids).where('session_id', 'is', null).execute();
      expect(left).toEqual([]);
      await assertLinkInvariants(t.ctx.db);

      // Zero failures, and the counters add up across the nine processes.
      const created = workers.reduce((n, w) => n + w.created_count, 0) + recovery.counts.created;
      expect(created).toBe(N);
      expect(workers.reduce((n, w) => n + w.failed_count, 0) + recovery.counts.failed).toBe(0);
      expect(workers.filter((w) => w.created_count > 0).length).toBeGreaterThanOrEqual(2); // they really shared the work
      expect(recovery.counts.created + recovery.counts.skipped).toBe(N);
      const conv = await sql<{ result: string; source: string; n: number; appts: number }>`
      select result, source, count(*)::int as n, count(distinct appointment_id)::int as appts
        from appointment_conversions group by result, source order by result, source`.execute(t.ctx.db);
      const createdRows = conv.rows.filter((r) => r.result === 'created');
      expect(createdRows.reduce((n, r) => n + r.n, 0)).toBe(N);
      expect(conv.rows.filter((r) => r.result === 'failed')).toEqual([]);
      const runs = await sql<{ job: string; runs: number; created: number; failed: number }>`
      select job, count(*)::int as runs, sum(created)::int as created, sum(failed)::int as failed from job_runs group by job order by job`.execute(
        t.ctx.db,
      );
      expect(runs.rows).toEqual([
        { job: 'appointments:auto-start-sessions', runs: 8, created: N - recovery.counts.created, failed: 0 },
        { job: 'appointments:recover-sessions', runs: 1, created: recovery.counts.created, failed: 0 },
      ]);
      // Notifications: one outbox row per appointment, one delivered notification per recipient.
      const notes = await sql<{ outbox: number; keys: number; delivered: number; undelivered: number }>`
      select (select count(*)::int from notification_outbox) as outbox,
             (select count(distinct dedupe_key)::int from notification_outbox) as keys,
             (select count(*)::int from notifications) as delivered,
             (select count(*)::int from notification_outbox where delivered_at is null) as undelivered`.execute(t.ctx.db);
      expect(notes.rows[0]).toEqual({ outbox: N, keys: N, delivered: 2 * N, undelivered: 0 });
    },
  );

  it('auto-start and recovery racing start-session requests: one session each', { timeout: 90_000 }, async () => {
    const N = 300;
    const ids = await dueAppointments(t.ctx.db, N, 'start');
    const plan = await upsertPlan(t.ctx.db, { name: 'race-plan', text_credits: 5, voice_credits: 5, video_credits: 5, validity_days: 30 });
    const appts = await t.ctx.db.selectFrom('appointments').select(['id', 'patient_id', 'doctor_id']).where('id', 'in', ids).execute();
    await sql`
      insert into subscriptions (patient_id, plan_id, payment_reference, text_credits, voice_credits, video_credits,
                                 text_remaining, voice_remaining, video_remaining, expires_at)
      select a.patient_id, ${plan.id}, 'race-' || a.id, 5, 5, 5, 5, 5, 5, now() + interval '30 days'
        from appointments a where a.id in (${sql.join(ids)})`.execute(t.ctx.db);
    const headers = new Map<number, { authorization: string }>();
    for (const a of appts)
      headers.set(a.id, await t.auth(a.id % 2 ? { id: a.patient_id, role: 'patient' } : { id: a.doctor_id, role: 'doctor' }));
    const candidates = (await selectRecoveryCandidates(t.ctx, parseLookback('24h')!, N)).candidates;

    const requests = appts.map((a) =>
      t.app.inject({ method: 'POST', url: `/api/v2/appointments/${a.id}/start-session`, headers: headers.get(a.id)! }),
    );
    const [responses, auto1, auto2, recovered] = await Promise.all([
      Promise.all(requests),
      runAutoStart(t.ctx, { runId: randomUUID(), trigger: 'worker' }),
      runAutoStart(t.ctx, { runId: randomUUID(), trigger: 'worker' }),
      executeRecovery(t.ctx, candidates, { runId: randomUUID() }),
    ]);

    const sessions = await t.ctx.db.selectFrom('sessions').select(['id', 'appointment_id']).where('appointment_id', 'in', ids).execute();
    expect(sessions).toHaveLength(N);
    const byAppointment = new Map(sessions.map((s) => [s.appointment_id!, s.id]));
    for (const [i, res] of responses.entries()) {
      const a = appts[i]!;
      expect([200, 201], res.body).toContain(res.statusCode);
      expect(res.json().data.id).toBe(byAppointment.get(a.id));
    }
    const fromRequests = responses.filter((r) => r.statusCode === 201).length;
    const total = fromRequests + auto1.created_count + auto2.created_count + recovered.filter((r) => r.action === 'created').length;
    expect(total).toBe(N);
    expect(auto1.failed_count + auto2.failed_count + recovered.filter((r) => r.action === 'failed').length).toBe(0);
    await assertLinkInvariants(t.ctx.db);
  });
});
