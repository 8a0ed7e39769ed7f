/**
 * Appointments settle and records have a retention, through the worker's
 * job functions on a real database. Runs on PGlite and PostgreSQL.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settleAppointments } from '../../src/modules/jobs/appointments-settle.js';
import { pruneRecords } from '../../src/modules/jobs/job-runs-retention.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000);
const statusOf = async (id: number) =>
  (await t.ctx.db.selectFrom('appointments').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;

describe('appointments settle', () => {
  it('pending past its time → expired; confirmed past STALE_APPOINTMENT_DAYS → missed; each recorded; the rest untouched', async () => {
    const pendingPast = await t.newAppointment({ status: 'pending', scheduled_at: new Date(Date.now() - 60_000) });
    const pendingFuture = await t.newAppointment({ status: 'pending', scheduled_at: new Date(Date.now() + 3_600_000) });
    const staleConfirmed = await t.newAppointment({ status: 'confirmed', scheduled_at: daysAgo(7.01) });
    const lateConfirmed = await t.newAppointment({ status: 'confirmed', scheduled_at: daysAgo(2) }); // past the lateness window, not stale
    const r = await settleAppointments(t.ctx);
    expect(r).toEqual({ expired: 1, missed: 1 });
    expect(await statusOf(pendingPast.id)).toBe('expired');
    expect(await statusOf(pendingFuture.id)).toBe('pending');
    expect(await statusOf(staleConfirmed.id)).toBe('missed');
    expect(await statusOf(lateConfirmed.id)).toBe('confirmed');
    const rows = await t.ctx.db
      .selectFrom('appointment_conversions')
      .select(['appointment_id', 'result', 'failure_reason', 'source'])
      .where('source', '=', 'settle')
      .orderBy('appointment_id')
      .execute();
    expect(rows).toEqual([
      { appointment_id: pendingPast.id, result: 'expired', failure_reason: 'never_confirmed', source: 'settle' },
      { appointment_id: staleConfirmed.id, result: 'missed', failure_reason: 'stale_confirmed', source: 'settle' },
    ]);
    expect(await settleAppointments(t.ctx)).toEqual({ expired: 0, missed: 0 }); // idempotent
  });
});

describe('records retention', () => {
  it('prunes record rows older than RECORD_RETENTION_DAYS in batches; keeps newer ones, undelivered outbox rows, messages and the ledger', async () => {
    const a = await t.newAppointment({});
    const old = daysAgo(31);
    const recent = daysAgo(6.9);
    for (const at of [old, recent]) {
      await sql`insert into guard_events (guard, operation, outcome, enforced, appointment_id, created_at)
                values ('chat', 'getMessages', 'would_block', false, ${a.id}, ${at})`.execute(t.ctx.db);
      await sql`insert into appointment_conversions (appointment_id, source, result, created_at)
                values (${a.id}, 'auto_start', 'failed', ${at})`.execute(t.ctx.db);
      await sql`insert into idempotency_keys (user_id, scope, key, request_hash, response_status, response_body, created_at)
                values (${a.patient.id}, 'x', ${`k-${at.getTime()}`}, 'h', 200, '{}', ${at})`.execute(t.ctx.db);
      await sql`insert into job_runs (run_id, job, started_at, status, created) values (gen_random_uuid(), 'x', ${at}, 'succeeded', 1)`.execute(
        t.ctx.db,
      );
      await sql`insert into notification_outbox (dedupe_key, recipient_id, kind, payload, created_at, delivered_at)
                values (${`d-${at.getTime()}`}, ${a.patient.id}, 'k', '{}', ${at}, ${at})`.execute(t.ctx.db);
    }
    // Never delivered: kept however old.
    await sql`insert into notification_outbox (dedupe_key, recipient_id, kind, payload, created_at)
              values ('pending-old', ${a.patient.id}, 'k', '{}', ${old})`.execute(t.ctx.db);
    await sql`insert into messages (appointment_id, sender_id, type, body, created_at) values (${a.id}, ${a.patient.id}, 'text', 'old', ${old})`.execute(
      t.ctx.db,
    );

    const deleted = await pruneRecords(t.ctx);
    expect(deleted).toMatchObject({ guard_events: 1, appointment_conversions: 1, idempotency_keys: 1, notification_outbox: 1 });
    expect(deleted['job_runs']).toBeGreaterThanOrEqual(1);
    const olderThan = async (table: string, column: string) =>
      (
        await sql<{
          n: number;
        }>`select count(*)::int as n from ${sql.table(table)} where ${sql.ref(column)} < now() - interval '30 days'`.execute(t.ctx.db)
      ).rows[0]!.n;
    expect(await olderThan('guard_events', 'created_at')).toBe(0);
    expect(await olderThan('appointment_conversions', 'created_at')).toBe(0);
    expect(await olderThan('idempotency_keys', 'created_at')).toBe(0);
    expect(await olderThan('job_runs', 'started_at')).toBe(0);
    expect(await olderThan('messages', 'created_at')).toBe(1);
    const box = await t.ctx.db.selectFrom('notification_outbox').select('dedupe_key').execute();
    expect(box.map((b) => b.dedupe_key)).toEqual(expect.arrayContaining(['pending-old', `d-${recent.getTime()}`]));
    // The 7-day windows stay whole.
    expect(await sql`select 1 from guard_events where created_at = ${recent}`.execute(t.ctx.db).then((r) => r.rows.length)).toBe(1);
  });
});
