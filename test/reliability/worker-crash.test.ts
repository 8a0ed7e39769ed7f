/**
 * kill -9 in the middle of a batch (see docs/reliability.md), on PostgreSQL: an auto-start process is
 * SIGKILLed at a random point of its work, 10 times. After every kill: no appointment linked to a
 * missing session, no session without its appointment link, no half-written conversion (a linked
 * appointment always has its outbox rows and its conversion record). After a restart every due
 * appointment is converted, each exactly once, and every notification is delivered once.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, TEST_JWT_SECRET, type TestHarness } from '../helpers/app.js';
import { assertLinkInvariants, dueAppointments } from '../helpers/conversion-fixtures.js';
import { isPostgres } from '../helpers/db.js';
import { runCli, spawnCli } from '../helpers/process.js';

describe.skipIf(!isPostgres)('a worker killed mid-batch (PostgreSQL)', () => {
  let t: TestHarness;
  beforeAll(async () => {
    t = await createHarness();
  });
  afterAll(async () => t?.close());

  it('SIGKILL at random points, 10 times: never half-written; a restart converts everything once', { timeout: 150_000 }, async () => {
    const N = 3000;
    const ids = await dueAppointments(t.ctx.db, N, 'crash');
    const env = {
      DATABASE_URL: t.database.databaseUrl!,
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: 'warn',
      // Small batches: many commits, so the kills land between and inside batches.
      AUTO_START_BATCH_SIZE: '20',
    };
    const linked = async () =>
      Number((await sql<{ n: string }>`select count(*) as n from appointments where session_id is not null`.execute(t.ctx.db)).rows[0]!.n);
    let kills = 0;
    let killedInTransaction = 0;
    let previous = 0;
    for (let round = 0; round < 10; round++) {
      const proc = spawnCli(['appointments:auto-start-sessions', '--verbose'], env);
      // --verbose prints each batch after its commit; wait for a random number of batches to
      // commit, then a random few milliseconds more: the kill lands somewhere in the next one.
      const batches = 1 + Math.floor(Math.random() * 4);
      const deadline = Date.now() + 60_000;
      while (proc.stdout().split('\n').length <= batches * 20 && proc.child.exitCode === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2));
      }
      await new Promise((r) => setTimeout(r, Math.random() * 15));
      if (proc.child.exitCode === null) {
        const busy = await t.ctx.database.pool!.query<{ n: string }>(
          `select count(*) as n from pg_stat_activity
            where application_name = 'sessiongate-cli' and datname = current_database() and xact_start is not null`,
        );
        proc.child.kill('SIGKILL');
        kills += 1;
        if (Number(busy.rows[0]!.n) > 0) killedInTransaction += 1;
      }
      await proc.exited;
      await assertLinkInvariants(t.ctx.db);
      const now = await linked();
      expect(now).toBeGreaterThanOrEqual(previous);
      previous = now;
    }
    expect(kills).toBe(10);
    expect(killedInTransaction).toBeGreaterThan(0); // some kills hit an open batch transaction
    expect(previous).toBeLessThan(N); // the kills really interrupted the work

    // Restart: everything converts (rows a killed backend still held are released once
    // PostgreSQL has seen the connection drop).
    const r = await runCli(['appointments:auto-start-sessions', '--json'], env, { timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { created_count: number; failed_count: number };
    expect(out.failed_count).toBe(0);
    expect(out.created_count).toBe(N - previous);

    const left = await t.ctx.db.selectFrom('appointments').select('id').where('id', 'in', ids).where('session_id', 'is', null).execute();
    expect(left).toEqual([]);
    await assertLinkInvariants(t.ctx.db);
    const counts = await sql<{ sessions: number; created: number; outbox: number; delivered: number }>`
      select (select count(*)::int from sessions) as sessions,
             (select count(*)::int from appointment_conversions where result = 'created') as created,
             (select count(*)::int from notification_outbox) as outbox,
             (select count(*)::int from notifications) as delivered`.execute(t.ctx.db);
    expect(counts.rows[0]).toEqual({ sessions: N, created: N, outbox: N, delivered: 2 * N });
  });
});
