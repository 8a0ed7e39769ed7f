/**
 * The process as an operator runs it: configuration errors at boot, SIGHUP flag reloads,
 * graceful shutdown, and migrations from several processes at once.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { signToken } from '../../src/lib/auth.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { cloneTestDatabase, isPostgres, type TestDatabase } from '../helpers/db.js';
import { freePort, runCli, spawnCli, waitForStatus } from '../helpers/process.js';

const dirs: string[] = [];
const dbs: TestDatabase[] = [];
afterAll(async () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  for (const d of dbs) await d.drop();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sessiongate-proc-'));
  dirs.push(d);
  return d;
}

async function databaseEnv(): Promise<Record<string, string>> {
  const db = await cloneTestDatabase();
  dbs.push(db);
  return db.databaseUrl ? { DATABASE_URL: db.databaseUrl } : { DATA_DIR: db.dataDir };
}

describe('configuration at boot', () => {
  it('lists every invalid variable in one error and exits non-zero', async () => {
    const res = await runCli(
      ['serve'],
      { PORT: 'abc', ENFORCE_SESSION_GATED_CHAT: 'maybe', LOG_LEVEL: 'loud', LOG_BUFFER_BYTES: 'lots', DATA_DIR: tempDir() },
      { cwd: tempDir() },
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('PORT');
    expect(res.stderr).toContain('ENFORCE_SESSION_GATED_CHAT');
    expect(res.stderr).toContain('LOG_LEVEL');
    expect(res.stderr).toContain('LOG_BUFFER_BYTES');
  });

  it('requires JWT_SECRET with PostgreSQL', async () => {
    const res = await runCli(['serve'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' }, { cwd: tempDir() });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('JWT_SECRET');
  });
});

describe('a running server', () => {
  it('logs flags at boot, re-reads .env on SIGHUP, drains and exits 0 on SIGTERM', async () => {
    const cwd = tempDir();
    const env = { ...(await databaseEnv()), JWT_SECRET: TEST_JWT_SECRET };
    writeFileSync(join(cwd, '.env'), 'ENFORCE_SESSION_GATED_CHAT=false\n');
    const created = await runCli(['users:create', '--role', 'admin', '--name', 'Ops'], env, { cwd });
    expect(created.code, created.stderr).toBe(0);
    const adminId = Number(created.stdout.trim());
    const token = await signToken(TEST_JWT_SECRET, { sub: adminId, role: 'admin' });

    const port = await freePort();
    const server = spawnCli(['serve'], { ...env, PORT: String(port) }, { cwd });
    try {
      expect(await waitForStatus(`http://127.0.0.1:${port}/health/ready`)).toBe(true);
      await expect.poll(() => server.stdout(), { timeout: 2000 }).toContain('"phase":1');
      // Log lines are batched (LOG_BUFFER_BYTES) but never held back longer than a second.
      await fetch(`http://127.0.0.1:${port}/api/v2/no-such-route-for-the-log`);
      await expect.poll(() => server.stdout(), { timeout: 3000 }).toContain('/api/v2/no-such-route-for-the-log');
      const flags = async () =>
        (
          (await (
            await fetch(`http://127.0.0.1:${port}/api/v2/admin/flags`, { headers: { authorization: `Bearer ${token}` } })
          ).json()) as {
            data: { phase: number; flags: Record<string, boolean> };
          }
        ).data;
      expect((await flags()).flags['ENFORCE_SESSION_GATED_CHAT']).toBe(false);

      writeFileSync(join(cwd, '.env'), 'ENFORCE_SESSION_GATED_CHAT=yes\n');
      server.child.kill('SIGHUP');
      await expect.poll(async () => (await flags()).phase, { timeout: 5000 }).toBe(2);

      // An invalid value on reload keeps the running flags.
      writeFileSync(join(cwd, '.env'), 'ENFORCE_SESSION_GATED_CHAT=perhaps\n');
      server.child.kill('SIGHUP');
      await expect.poll(() => server.stdout().includes('keeping the current values'), { timeout: 5000 }).toBe(true);
      expect((await flags()).flags['ENFORCE_SESSION_GATED_CHAT']).toBe(true);

      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
      expect(server.stdout()).toContain('shutting down');
    } finally {
      server.child.kill('SIGKILL');
    }
  });
});

describe.skipIf(!isPostgres)('migrations', () => {
  it('several processes migrating one empty database at once all succeed, applying each migration once', async () => {
    const url = process.env['DATABASE_URL']!;
    const name = `sg_mig_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`create database ${name}`);
    const u = new URL(url);
    u.pathname = `/${name}`;
    try {
      const runs = await Promise.all(
        Array.from({ length: 4 }, () =>
          runCli(['db:migrate', '--json'], { DATABASE_URL: u.toString(), JWT_SECRET: TEST_JWT_SECRET }, { cwd: tempDir() }),
        ),
      );
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
      const c = new pg.Client({ connectionString: u.toString() });
      await c.connect();
      const rows = await c.query('select name from schema_migrations');
      await c.end();
      expect(rows.rowCount).toBeGreaterThan(0);
      expect(new Set(rows.rows.map((r) => r.name)).size).toBe(rows.rowCount);
    } finally {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });
});
