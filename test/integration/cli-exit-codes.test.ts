/**
 * Exit codes a script can rely on, through real CLI processes (and in-process `main` where the
 * process adds nothing): 0 ok, 1 warning / failed / not
 * ready, 2 critical / refused, 3 did not run (bad option, bad configuration, no database) — and,
 * with --json, every error that stops a command is a JSON object on stdout.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliDatabase, type CliDatabase } from '../helpers/cli-run.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { freePort, runCli } from '../helpers/process.js';

let cli: CliDatabase;
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'sg-exit-'));
  dirs.push(d);
  return d;
};
const run = (args: string[], extra: Record<string, string | undefined> = {}, opts: { cwd?: string } = {}) =>
  runCli(args, { ...cli.env, LOG_LEVEL: 'error', ...extra }, { cwd: opts.cwd ?? tempDir(), timeoutMs: 150_000 });
/** In-process (main(argv, io)): the same code path, without a process start per assertion. */
const local = async (args: string[], env: Record<string, string | undefined> = {}) => {
  const r = await cli.run(args, { env });
  return { code: r.code, stdout: r.out, stderr: r.err };
};
const jsonError = (stdout: string) => (JSON.parse(stdout) as { error: { code: string; message: string; exit_code: number } }).error;

beforeAll(async () => {
  cli = await cliDatabase();
});
afterAll(async () => {
  await cli?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('3 = the command did not run', () => {
  it('monitor-sessions --alert: no database, an invalid .env, an unknown option — each exits 3, never 1', async () => {
    // Nothing listens on this port: ECONNREFUSED.
    const deadPort = await freePort();
    const noDb = await run(['appointments:monitor-sessions', '--alert'], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${deadPort}/postgres`,
      JWT_SECRET: TEST_JWT_SECRET,
    });
    expect(noDb.code, noDb.stderr).toBe(3);
    expect(noDb.stderr).toContain('cannot open the database');
    expect(noDb.stderr).toContain('ECONNREFUSED');

    const noDbJson = await local(['appointments:monitor-sessions', '--alert', '--json'], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${deadPort}/postgres`,
      JWT_SECRET: TEST_JWT_SECRET,
    });
    expect(noDbJson.code).toBe(3);
    expect(jsonError(noDbJson.stdout)).toMatchObject({ code: 'DATABASE_UNAVAILABLE', exit_code: 3 });

    const cwd = tempDir();
    writeFileSync(join(cwd, '.env'), 'AUTO_START_MAX_ATTEMPTS=lots\nENFORCE_SESSION_GATED_CHAT=maybe\n');
    const badEnv = await run(['appointments:monitor-sessions', '--alert', '--json'], {}, { cwd });
    expect(badEnv.code).toBe(3);
    expect(badEnv.stderr).toContain('AUTO_START_MAX_ATTEMPTS');
    expect(jsonError(badEnv.stdout)).toMatchObject({ code: 'CONFIG_INVALID', exit_code: 3 });
    expect(jsonError(badEnv.stdout).message).toContain('ENFORCE_SESSION_GATED_CHAT');

    const badOption = await local(['appointments:monitor-sessions', '--alert', '--critical-at=5']);
    expect(badOption.code).toBe(3);
    expect(badOption.stderr).toContain('--critical-at');
    const badOptionJson = await local(['appointments:monitor-sessions', '--json', '--nope']);
    expect(badOptionJson.code).toBe(3);
    expect(jsonError(badOptionJson.stdout)).toMatchObject({ code: 'USAGE_ERROR', exit_code: 3 });

    const unknown = await local(['appointments:monitor', '--json']);
    expect(unknown.code).toBe(3);
    expect(jsonError(unknown.stdout)).toMatchObject({ code: 'UNKNOWN_COMMAND', exit_code: 3 });
  }, 400_000);

  it('monitor-sessions --alert runs and exits by level (0 ok, 1 warning) against a reachable database', async () => {
    const ok = await local(['appointments:monitor-sessions', '--alert']);
    expect(ok.code, ok.stderr).toBe(0);
    await cli.db(async (db) => {
      const p = (await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P') returning id`.execute(db)).rows[0]!.id;
      const d = (await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D') returning id`.execute(db)).rows[0]!.id;
      await sql`
        insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
        select ${p}, ${d}, 'text', 'confirmed', now() - make_interval(mins => 10 + i) from generate_series(1, 10) as i`.execute(db);
    });
    const warning = await local(['appointments:monitor-sessions', '--alert', '--json']);
    expect(warning.code, warning.stderr).toBe(1);
    expect(JSON.parse(warning.stdout)).toMatchObject({ level: 'warning' });
    await cli.db((db) => sql`truncate appointments restart identity cascade`.execute(db));
  }, 200_000);

  it('every --help documents exit code 3; the command list documents all four', async () => {
    const list = await local(['--help']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('3 did not run');
    const help = await local(['appointments:monitor-sessions', '--help']);
    expect(help.stdout).toContain('0 ok, 1 warning, 2 critical');
    expect(help.stdout).toContain('Exit code 3 always means the command did not run');
    const none = await local([]);
    expect(none.code).toBe(3);
  }, 200_000);
});

describe('refusals with --json', () => {
  it('recover-sessions --execute without a terminal: exit 2 and a JSON error object on stdout', async () => {
    const r = await run(['appointments:recover-sessions', '--execute', '--json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--yes');
    expect(jsonError(r.stdout)).toMatchObject({ code: 'REFUSED', exit_code: 2 });
  }, 200_000);
});

describe('rollout:status --check', () => {
  it('exits 0 when the next step is ready and 1 when it is not; the JSON carries ready per flag and for the next step', async () => {
    const ready = await local(['rollout:status', '--check', '--json']);
    expect(ready.code, ready.stderr).toBe(0);
    const s = JSON.parse(ready.stdout) as {
      order: { next_step: { flag: string; ready: boolean } };
      flag_status: { flag: string; ready: boolean }[];
    };
    expect(s.order.next_step).toMatchObject({ flag: 'ENFORCE_SESSION_GATED_CHAT', ready: true });
    expect(s.flag_status.every((f) => typeof f.ready === 'boolean')).toBe(true);

    // A legacy chat request that turning the flag on would have refused, 2 hours ago.
    await cli.db(async (db) => {
      const p = (await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P2') returning id`.execute(db)).rows[0]!.id;
      const d = (await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D2') returning id`.execute(db)).rows[0]!.id;
      const a = (
        await sql<{ id: number }>`
          insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
          values (${p}, ${d}, 'text', 'completed', now() - interval '1 day') returning id`.execute(db)
      ).rows[0]!.id;
      await sql`
        insert into guard_events (guard, operation, outcome, enforced, appointment_id, user_id, created_at)
        values ('chat', 'getMessages', 'would_block', false, ${a}, ${p}, now() - interval '2 hours')`.execute(db);
    });
    const notReady = await local(['rollout:status', '--check']);
    expect(notReady.code, notReady.stderr).toBe(1);
    expect(notReady.stdout).toContain('Next step: ENFORCE_SESSION_GATED_CHAT=true — NOT READY');
    const json = JSON.parse((await local(['rollout:status', '--json'])).stdout) as typeof s;
    expect(json.order.next_step.ready).toBe(false);
    // Without --check the status is printed and the command exits 0 whatever the verdict.
    expect((await local(['rollout:status'])).code).toBe(0);
  }, 400_000);
});
