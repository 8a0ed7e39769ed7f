/**
 * `appointments:recover-sessions`: dry run writes nothing, --execute confirmation,
 * refusal without a terminal, --lookback forms, --limit, --json, the progress bar, the audit,
 * idempotent reruns, exit codes — run as the CLI against a database of its own.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/types.js';
import { parseLookback } from '../../src/modules/sessions/recovery.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { cliDatabase, type CliDatabase } from '../helpers/cli-run.js';
import { runCli } from '../helpers/process.js';

describe('--lookback forms', () => {
  it.each([
    ['24', { hours: 24, label: '24h' }],
    ['24h', { hours: 24, label: '24h' }],
    ['24H', { hours: 24, label: '24h' }],
    ['1', { hours: 1, label: '1h' }],
    ['7d', { hours: 168, label: '7d' }],
    ['30D', { hours: 720, label: '30d' }],
    ['all', { hours: null, label: 'all' }],
    ['ALL', { hours: null, label: 'all' }],
  ])('%s → %o', (raw, expected) => expect(parseLookback(raw)).toEqual(expected));

  it.each(['', '0', '0h', '-1', '24m', '1w', '24 h', 'h', 'd', '1.5h', 'forever', '24hours', '99999999', '3651d'])(
    '"%s" is refused',
    (raw) => {
      expect(parseLookback(raw)).toBeNull();
    },
  );
});

let cli: CliDatabase;
beforeAll(async () => {
  cli = await cliDatabase();
});
afterAll(async () => cli?.close());

const TABLES = [
  'appointments',
  'sessions',
  'appointment_conversions',
  'job_runs',
  'notification_outbox',
  'notifications',
  'messages',
] as const;

/** Row counts of every table recovery could write, and the newest appointments.updated_at. */
async function fingerprint(db: Db) {
  const counts: Record<string, number> = {};
  for (const table of TABLES) {
    const r = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(db);
    counts[table] = r.rows[0]!.n;
  }
  const u = await sql<{ updated: string }>`select coalesce(max(updated_at), 'epoch')::text as updated, count(*) from appointments`.execute(
    db,
  );
  return { counts, updated: u.rows[0]!.updated };
}

interface Fixture {
  type?: string;
  hoursAgo: number;
  status?: string;
  attempts?: number;
}

async function appointments(db: Db, list: Fixture[]): Promise<number[]> {
  const ids: number[] = [];
  for (const f of list) {
    const p = await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P') returning id`.execute(db);
    const d = await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D') returning id`.execute(db);
    const a = await sql<{ id: number }>`
      insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at, conversion_attempts, last_conversion_error)
      values (${p.rows[0]!.id}, ${d.rows[0]!.id}, ${f.type ?? 'text'}, ${f.status ?? 'confirmed'},
              now() - make_interval(secs => ${Math.round(f.hoursAgo * 3600)}), ${f.attempts ?? 0},
              ${f.attempts ? 'createSession_conflict_existing_session' : null})
      returning id`.execute(db);
    ids.push(a.rows[0]!.id);
  }
  return ids;
}

const RECOVER = 'appointments:recover-sessions';

describe('appointments:recover-sessions', () => {
  let ids: number[];
  let names: Record<'missed' | 'gaveUp' | 'old' | 'bad' | 'future' | 'pending' | 'cancelled' | 'ancient', number>;

  beforeAll(async () => {
    ids = await cli.db((db) =>
      appointments(db, [
        { hoursAgo: 2 }, // ordinary missed one
        { hoursAgo: 3, type: 'video', attempts: 5 }, // auto-start gave up on it
        { hoursAgo: 30, type: 'voice' }, // beyond auto-start's 24 h lateness, within 7d
        { hoursAgo: 0.5, type: 'telepathy' }, // will fail: invalid_appointment_state
        { hoursAgo: -1 }, // future: never
        { hoursAgo: 1, status: 'pending' }, // not confirmed: never
        { hoursAgo: 1, status: 'cancelled' },
        { hoursAgo: 24 * 10 }, // outside 7d
      ]),
    );
    names = {
      missed: ids[0]!,
      gaveUp: ids[1]!,
      old: ids[2]!,
      bad: ids[3]!,
      future: ids[4]!,
      pending: ids[5]!,
      cancelled: ids[6]!,
      ancient: ids[7]!,
    };
  });

  it('refuses a bad --lookback with exit 3 (did not run), naming the accepted forms, before touching anything', async () => {
    for (const bad of ['24m', 'yesterday', '0', '-3']) {
      const r = await cli.run([RECOVER, `--lookback=${bad}`, '--execute', '--yes']);
      expect(r.code, bad).toBe(3);
      expect(r.err).toContain('24 (hours), 24h, 7d or all');
    }
    const r = await cli.run([RECOVER, '--limit=0']);
    expect(r.code).toBe(3);
  });

  it('dry run (the default) prints what it would do and writes nothing', async () => {
    const before = await cli.db(fingerprint);
    const r = await cli.run([RECOVER, '--lookback=7d']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('DRY RUN');
    expect(r.out).toMatch(new RegExp(`would create appointment ${names.missed} text`));
    expect(r.out).toMatch(new RegExp(`would create appointment ${names.gaveUp} video .* attempts 5`));
    expect(r.out).toMatch(new RegExp(`would create appointment ${names.old} voice`));
    expect(r.out).toMatch(new RegExp(`would FAIL   appointment ${names.bad} telepathy .*\\(invalid_appointment_state\\)`));
    for (const never of [names.future, names.pending, names.cancelled, names.ancient]) expect(r.out).not.toContain(`appointment ${never} `);
    expect(r.out).toContain('Summary: 3 would be created, 0 would be skipped, 1 would be failed');
    expect(await cli.db(fingerprint)).toEqual(before);

    // The same as JSON; the bare number means hours (24 h: the 30-hour-old one is outside).
    const j = await cli.run([RECOVER, '--lookback=24', '--json']);
    const out = JSON.parse(j.out);
    expect(out).toMatchObject({ mode: 'dry-run', lookback: '24h', limit: 100, counts: { selected: 3, created: 2, skipped: 0, failed: 1 } });
    expect(out.appointments.map((a: { appointment_id: number }) => a.appointment_id).sort()).toEqual(
      [names.missed, names.gaveUp, names.bad].sort(),
    );
    expect(out.appointments[0]).toMatchObject({ action: expect.stringMatching(/^would_/), session_id: null });
    expect(await cli.db(fingerprint)).toEqual(before);
  });

  it('--execute without a terminal and without --yes refuses with exit 2 and writes nothing', async () => {
    const before = await cli.db(fingerprint);
    const r = await cli.run([RECOVER, '--execute', '--lookback=7d']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--yes');
    expect(await cli.db(fingerprint)).toEqual(before);
  });

  it('--execute on a terminal asks; anything but yes cancels and writes nothing', async () => {
    const before = await cli.db(fingerprint);
    for (const answer of ['n\n', '\n', 'nope\n', '']) {
      const r = await cli.run([RECOVER, '--execute', '--lookback=7d'], { isTTY: true, stdin: answer });
      expect(r.code, JSON.stringify(answer)).toBe(0);
      expect(r.err).toContain('Create sessions for 4 appointment(s)? [y/N]');
      expect(r.out).toContain('Cancelled by operator');
    }
    expect(await cli.db(fingerprint)).toEqual(before);
  });

  it('--execute confirmed with y: creates the oldest --limit, draws progress on the terminal', async () => {
    const r = await cli.run([RECOVER, '--execute', '--lookback=7d', '--limit=3'], { isTTY: true, stdin: 'y\n' });
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.err).toMatch(/\[#+\] 3\/3 appointments/);
    // Oldest first: old (30 h), gaveUp (3 h), missed (2 h); the newest (failing) one is left for next time.
    const rows = await cli.db((db) =>
      db
        .selectFrom('appointments')
        .select(['id', 'status', 'session_id'])
        .where('id', 'in', [names.old, names.gaveUp, names.missed, names.bad])
        .execute(),
    );
    expect(
      rows
        .filter((a) => a.session_id !== null)
        .map((a) => a.id)
        .sort(),
    ).toEqual([names.missed, names.gaveUp, names.old].sort());
    expect(rows.find((a) => a.id === names.gaveUp)?.status).toBe('in_progress');
    expect(r.out).toMatch(new RegExp(`created      appointment ${names.gaveUp} video .* call_session:\\d+`));
    expect(r.out).toMatch(new RegExp(`created      appointment ${names.missed} text .* text_session:\\d+`));
    expect(r.out).toMatch(/Summary: 3 created, 0 skipped, 0 failed \(run [0-9a-f-]{36}\)/);

    // Recorded: one job run, one conversion row per appointment with its run id; notified once.
    const run = await cli.db((db) => db.selectFrom('job_runs').selectAll().where('job', '=', RECOVER).executeTakeFirstOrThrow());
    expect(run).toMatchObject({ status: 'succeeded', selected: 3, created: 3, skipped: 0, failed: 0 });
    const conv = await cli.db((db) => db.selectFrom('appointment_conversions').selectAll().where('job_run_id', '=', run.run_id).execute());
    expect(conv.map((c) => [c.appointment_id, c.result, c.source]).sort()).toEqual(
      [names.missed, names.gaveUp, names.old].sort().map((id) => [id, 'created', 'recovery']),
    );
    const notes = await cli.db((db) => db.selectFrom('notifications').select('user_id').execute());
    expect(notes).toHaveLength(6);
  });

  it('--execute --yes: the failing appointment fails (exit 1) without stopping the others; earlier recoveries are reported skipped', async () => {
    const r = await cli.run([RECOVER, '--execute', '--yes', '--lookback=7d', '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.out);
    expect(out.counts).toEqual({ selected: 4, created: 0, skipped: 3, failed: 1 });
    expect(out.appointments[0]).toMatchObject({ appointment_id: names.bad, action: 'failed', reason: 'invalid_appointment_state' });
    for (const a of out.appointments.slice(1))
      expect(a).toMatchObject({ action: 'skipped', reason: 'session_id_already_set', session_id: expect.any(Number) });
  });

  it('is idempotent: a second run creates nothing, every appointment skipped session_id_already_set', async () => {
    await cli.db((db) => db.updateTable('appointments').set({ status: 'cancelled' }).where('id', '=', names.bad).execute());
    const before = await cli.db(fingerprint);
    const r = await cli.run([RECOVER, '--execute', '--yes', '--lookback=7d']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('Summary: 0 created, 3 skipped, 0 failed');
    for (const id of [names.missed, names.gaveUp, names.old]) {
      expect(r.out).toMatch(new RegExp(`skipped      appointment ${id} .*_session:\\d+ \\(session_id_already_set\\)`));
    }
    const after = await cli.db(fingerprint);
    expect(after.counts.sessions).toBe(before.counts.sessions);
    expect(after.counts.notification_outbox).toBe(before.counts.notification_outbox);
    expect(after.updated).toBe(before.updated);
    // The dry run says the same.
    const dry = await cli.run([RECOVER, '--lookback=7d', '--json']);
    expect(JSON.parse(dry.out).counts).toEqual({ selected: 3, created: 0, skipped: 3, failed: 0 });
  });

  it('already-recovered appointments never crowd out ones that still need a session', async () => {
    const [fresh] = await cli.db((db) => appointments(db, [{ hoursAgo: 40 }]));
    // The limit is 1: the unlinked appointment comes first, although three older-recovered ones exist.
    const r = await cli.run([RECOVER, '--execute', '--yes', '--lookback=7d', '--limit=1', '--json']);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).appointments).toMatchObject([{ appointment_id: fresh, action: 'created' }]);
  });

  it('as a real process: exit codes, and one appointment_recovery_run log event', async () => {
    await cli.db((db) => appointments(db, [{ hoursAgo: 5, type: 'audio' }]));
    const env = { ...cli.env, LOG_LEVEL: 'info' } as Record<string, string | undefined>;
    const refused = await runCli([RECOVER, '--execute'], env);
    expect(refused.code).toBe(2);
    const r = await runCli([RECOVER, '--execute', '--yes', '--lookback=all', '--json'], { ...env, JWT_SECRET: TEST_JWT_SECRET });
    expect(r.code, r.stderr).toBe(0);
    const events = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const runEvents = events.filter((e) => e['event'] === 'appointment_recovery_run');
    expect(runEvents).toHaveLength(1);
    expect(runEvents[0]).toMatchObject({
      mode: 'execute',
      lookback: 'all',
      limit: 100,
      created_count: 2,
      skipped_count: 4,
      failed_count: 0,
      source: 'APPOINTMENT',
    });
    // --lookback=all reaches the 10-day-old appointment too.
    expect(
      events.filter((e) => e['event'] === 'appointment_session_conversion' && e['result'] === 'created').map((e) => e['appointment_id']),
    ).toContain(names.ancient);
  });
});
