/**
 * The embedded database as a real server (PGlite default): the process that opens DATA_DIR owns
 * it and serves it on a Unix socket; every other process — each CLI command, a second `serve` —
 * goes through that socket and never opens the files. Real processes, real sockets.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/index.js';
import { createBusFor } from '../../src/realtime/create-bus.js';
import { PgBus } from '../../src/realtime/pg-bus.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { cloneTestDatabase, isPostgres, type TestDatabase } from '../helpers/db.js';
import { freePort, ROOT, runCli, spawnCli, waitForStatus, type Spawned } from '../helpers/process.js';

const readLockFile = (dir: string) =>
  JSON.parse(readFileSync(join(dir, 'sessiongate.lock'), 'utf8')) as { pid: number; socket: string | null };

async function startServer(dataDir: string, extra: Record<string, string> = {}): Promise<{ proc: Spawned; port: number }> {
  const port = await freePort();
  const proc = spawnCli(['serve'], { DATA_DIR: dataDir, JWT_SECRET: TEST_JWT_SECRET, PORT: String(port), LOG_LEVEL: 'info', ...extra });
  const ok = await waitForStatus(`http://127.0.0.1:${port}/health/ready`, 200, 90_000);
  if (!ok) throw new Error(`server did not start: ${proc.stderr()}${proc.stdout()}`);
  return { proc, port };
}

async function stop(p: Spawned, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  await p.exited;
}

const me = (port: number, token: string) => fetch(`http://127.0.0.1:${port}/api/v2/me`, { headers: { authorization: `Bearer ${token}` } });

describe.skipIf(isPostgres)('the embedded database served by its owner', () => {
  let clone: TestDatabase;
  let env: Record<string, string>;
  let server: { proc: Spawned; port: number };

  beforeAll(async () => {
    clone = await cloneTestDatabase();
    env = { DATA_DIR: clone.dataDir, JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: 'warn' };
    server = await startServer(clone.dataDir);
  }, 120_000);
  afterAll(async () => {
    if (server) await stop(server.proc);
    await clone?.drop();
  });

  it('runs every runbook command while the server serves, and the server sees the result at once', { timeout: 300_000 }, async () => {
    const owner = readLockFile(clone.dataDir);
    expect(owner.pid).toBe(server.proc.child.pid);
    expect(owner.socket).toBeTruthy();

    const created = await runCli(['users:create', '--role', 'patient', '--name', 'Live Owner', '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    const id = (JSON.parse(created.stdout) as { id: number }).id;
    const token = await runCli(['auth:token', '--user', String(id)], env);
    expect(token.code, token.stderr).toBe(0);
    const jwt = token.stdout.trim().split(/\s+/).at(-1)!;
    const res = await me(server.port, jwt);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { data: { id: number } }).data.id).toBe(id);

    const seed = await runCli(['db:seed'], env, { timeoutMs: 120_000 });
    expect(seed.code, seed.stderr).toBe(0);
    const patient = /export PATIENT_TOKEN=(\S+)/.exec(seed.stdout)?.[1];
    expect(patient).toBeTruthy();
    expect((await me(server.port, patient!)).status).toBe(200);

    // The runbook commands at once: several clients of the owner in parallel.
    const runbook = [
      ['appointments:monitor-sessions'],
      ['rollout:status'],
      ['appointments:recover-sessions'],
      ['billing:audit'],
      ['flags:show'],
    ];
    const results = await Promise.all(runbook.map((args) => runCli(args, env, { timeoutMs: 120_000 })));
    results.forEach((r, i) => {
      // 0 ok, 1/2 a check's verdict; 3 would be "did not run".
      expect(r.code, `${runbook[i]!.join(' ')}: ${r.stderr}`).toBeLessThan(3);
      expect(r.stderr).not.toMatch(/cannot open|Aborted|RuntimeError/);
    });
    // Nobody else took the directory, and the server still answers.
    expect(readLockFile(clone.dataDir).pid).toBe(server.proc.child.pid);
    expect((await me(server.port, jwt)).status).toBe(200);
  });

  it('serves a second `serve` process and a CLI on the same DATA_DIR', { timeout: 240_000 }, async () => {
    const second = await startServer(clone.dataDir);
    try {
      expect(readLockFile(clone.dataDir).pid).toBe(server.proc.child.pid);
      const created = await runCli(['users:create', '--role', 'doctor', '--name', 'Two Servers', '--json'], env);
      expect(created.code, created.stderr).toBe(0);
      const id = (JSON.parse(created.stdout) as { id: number }).id;
      const token = (await runCli(['auth:token', '--user', String(id)], env)).stdout.trim().split(/\s+/).at(-1)!;
      expect((await me(server.port, token)).status).toBe(200);
      expect((await me(second.port, token)).status).toBe(200);
    } finally {
      await stop(second.proc);
    }
    expect(readLockFile(clone.dataDir).pid).toBe(server.proc.child.pid);
  });

  it('flags:reload sends SIGHUP to the pid in DATA_DIR/sessiongate.pid', { timeout: 120_000 }, async () => {
    expect(readFileSync(join(clone.dataDir, 'sessiongate.pid'), 'utf8').trim()).toBe(String(server.proc.child.pid));
    const before = server.proc.stdout().length;
    const r = await runCli(['flags:reload'], env);
    expect(r.code, r.stderr).toBe(0);
    const deadline = Date.now() + 10_000;
    while (!server.proc.stdout().slice(before).includes('SIGHUP') && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 100));
    expect(server.proc.stdout().slice(before)).toContain('SIGHUP');
  });

  it('flags:reload never signals a process the pid file names when it is not the owner (a pid reused after a crash)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sg-stale-pid-'));
    const bystander = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      writeFileSync(join(dir, 'sessiongate.pid'), `${bystander.pid}\n`);
      const r = await runCli(['flags:reload'], { ...env, DATA_DIR: dir });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('not its owner');
      await new Promise((settle) => setTimeout(settle, 300)); // a signal, had one been sent, would have ended it by now
      expect(bystander.exitCode).toBeNull();
      expect(bystander.signalCode).toBeNull();
    } finally {
      bystander.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it(
    'keeps every acknowledged write after a SIGKILL of the owner mid-burst; the next owner takes the stale lock',
    { timeout: 240_000 },
    async () => {
      const { socket } = readLockFile(clone.dataDir);
      const client = new pg.Client({ host: join(socket!, '..'), port: 5432, user: 'postgres', database: 'postgres' });
      client.on('error', () => {});
      await client.connect();
      await client.query('create table burst (id int primary key, at timestamptz not null default now())');
      const acked: number[] = [];
      const burst = (async () => {
        for (let i = 1; ; i++) {
          try {
            await client.query('insert into burst (id) values ($1)', [i]);
            acked.push(i);
          } catch {
            return;
          }
        }
      })();
      while (acked.length < 300) await new Promise((ok) => setTimeout(ok, 5));
      server.proc.child.kill('SIGKILL');
      await server.proc.exited;
      await burst;
      await client.end().catch(() => {});
      expect(readLockFile(clone.dataDir).pid).toBe(server.proc.child.pid); // left behind, stale

      server = await startServer(clone.dataDir);
      expect(readLockFile(clone.dataDir).pid).toBe(server.proc.child.pid);
      const after = new pg.Client({
        host: join(readLockFile(clone.dataDir).socket!, '..'),
        port: 5432,
        user: 'postgres',
        database: 'postgres',
      });
      await after.connect();
      const rows = (await after.query<{ id: number }>('select id from burst order by id')).rows.map((r) => r.id);
      await after.end();
      expect(rows.slice(0, acked.length)).toEqual(acked);
      expect(rows.length - acked.length).toBeLessThanOrEqual(1); // at most the insert in flight at the kill
    },
  );
});

describe.skipIf(isPostgres)('a data directory that cannot be opened', () => {
  it('says what, where and what to do in one sentence — no PGlite dump', { timeout: 180_000 }, async () => {
    const clone = await cloneTestDatabase();
    try {
      writeFileSync(join(clone.dataDir, 'global', 'pg_control'), Buffer.alloc(8192, 0x5a));
      const env = { DATA_DIR: clone.dataDir, JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: 'warn' };
      const cli = await runCli(['rollout:status'], env, { timeoutMs: 120_000 });
      expect(cli.code).toBe(3);
      const line = cli.stderr.trim();
      expect(line.split('\n')).toHaveLength(1);
      expect(line).toContain(clone.dataDir);
      expect(line).toMatch(/cannot be opened .*restore it from a backup, or move it aside/);
      expect(line.length).toBeLessThan(600);
      const port = await freePort();
      const srv = await runCli(['serve'], { ...env, PORT: String(port) }, { timeoutMs: 120_000 });
      expect(srv.code).toBe(3);
      expect(srv.stderr.trim().split('\n')).toHaveLength(1);
      expect(srv.stderr).toMatch(/cannot be opened .*move it aside/);
      // It was not taken: no lock left behind.
      expect(() => readFileSync(join(clone.dataDir, 'sessiongate.lock'))).toThrow();

      writeFileSync(join(clone.dataDir, 'PG_VERSION'), '17\n');
      const old = await runCli(['rollout:status'], env, { timeoutMs: 120_000 });
      expect(old.code).toBe(3);
      expect(old.stderr).toMatch(/created by PostgreSQL 17/);
    } finally {
      await clone.drop();
    }
  });
});

describe.skipIf(isPostgres)('the owner socket: isolation and events', () => {
  let clone: TestDatabase;
  let owner: Database;
  const clients: pg.Client[] = [];
  const connect = async () => {
    const c = new pg.Client({ host: join(owner.socketPath!, '..'), port: 5432, user: 'postgres', database: 'postgres' });
    await c.connect();
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    clone = await cloneTestDatabase();
    owner = await openDatabase({ databaseUrl: null, dataDir: clone.dataDir, role: 'test', serve: true });
  });
  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await owner?.close();
    await clone?.drop();
  });

  it('gives a connection in a transaction the database to itself until it ends', async () => {
    const a = await connect();
    const b = await connect();
    await a.query('create table iso (v int)');
    await a.query('begin');
    await a.query('insert into iso values ($1)', [1]);
    let bDone = false;
    const bCount = b.query<{ n: number }>('select count(*)::int as n from iso').then((r) => ((bDone = true), r.rows[0]!.n));
    let ownerDone = false;
    const ownerCount = sql<{ n: number }>`select count(*)::int as n from iso`
      .execute(owner.db)
      .then((r) => ((ownerDone = true), r.rows[0]!.n));
    await new Promise((ok) => setTimeout(ok, 300));
    expect(bDone).toBe(false); // nothing runs inside a's transaction
    expect(ownerDone).toBe(false);
    await a.query('insert into iso values ($1)', [2]);
    await a.query('commit');
    expect(await bCount).toBe(2);
    expect(await ownerCount).toBe(2);
    // A transaction rolled back by a client that disappears does not leave the database held.
    await b.query('begin');
    await b.query('insert into iso values (3)');
    await b.end();
    expect((await sql<{ n: number }>`select count(*)::int as n from iso`.execute(owner.db)).rows[0]!.n).toBe(2);
  });

  it('keeps the prepared statements of two connections apart', async () => {
    const a = await connect();
    const b = await connect();
    const ra = await a.query<{ v: string }>({ name: 'same_name', text: "select 'a' || $1::text as v", values: ['1'] });
    const rb = await b.query<{ v: string }>({ name: 'same_name', text: "select 'b' || $1::text as v", values: ['2'] });
    const ra2 = await a.query<{ v: string }>({ name: 'same_name', text: "select 'a' || $1::text as v", values: ['3'] });
    expect([ra.rows[0]!.v, rb.rows[0]!.v, ra2.rows[0]!.v]).toEqual(['a1', 'b2', 'a3']);
  });

  it('carries bus events between the owner and its clients, transactional ones after commit', async () => {
    const log = pino({ level: 'silent' });
    const ownerBus = await createBusFor(owner, log);
    const clientPool = new pg.Pool({ host: join(owner.socketPath!, '..'), port: 5432, user: 'postgres', database: 'postgres', max: 3 });
    const clientBus = await PgBus.start(clientPool, log);
    try {
      const atOwner: string[] = [];
      const atClient: string[] = [];
      ownerBus.subscribe((e) => atOwner.push(e.type));
      clientBus.subscribe((e) => atClient.push(e.type));
      await clientBus.publish({ type: 'from.client', payload: {} });
      await ownerBus.publish({ type: 'from.owner', payload: {} });
      const deliver = await owner.db
        .transaction()
        .execute((trx) => ownerBus.publishInTransaction(trx, [{ type: 'from.owner.trx', payload: {} }]));
      deliver();
      const deadline = Date.now() + 5_000;
      while ((atOwner.length < 3 || atClient.length < 3) && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 20));
      expect(atOwner.sort()).toEqual(['from.client', 'from.owner', 'from.owner.trx']);
      expect(atClient.sort()).toEqual(['from.client', 'from.owner', 'from.owner.trx']);
    } finally {
      await clientBus.close();
      await clientPool.end();
      await ownerBus.close();
    }
  });
});

describe.skipIf(isPostgres)('the README walk-through', () => {
  it('runs as written with the server running (scripts/readme-walkthrough.sh)', { timeout: 900_000 }, async () => {
    const clone = await cloneTestDatabase();
    try {
      const port = await freePort();
      const { spawnSync } = await import('node:child_process');
      const r = spawnSync('bash', [join(ROOT, 'scripts', 'readme-walkthrough.sh')], {
        cwd: ROOT,
        env: { PATH: process.env['PATH'], HOME: process.env['HOME'], PORT: String(port), DATA_DIR: join(clone.dataDir, 'walkthrough') },
        encoding: 'utf8',
        timeout: 880_000,
      });
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('readme-walkthrough: ok');
    } finally {
      await clone.drop();
    }
  });
});
