/**
 * Runs CLI commands in-process (`main(argv, io)`) against a database of their own — PGlite cannot
 * open the harness's data directory twice — with captured output, an optional terminal and stdin,
 * and fixture/assertion access to the same database between runs.
 */
import { PassThrough, Readable, Writable } from 'node:stream';
import type { CommandIO } from '../../src/cli/command.js';
import { main } from '../../src/cli/index.js';
import { openDatabase, type Database } from '../../src/db/index.js';
import type { Db } from '../../src/db/types.js';
import { TEST_JWT_SECRET } from './app.js';
import { cloneTestDatabase, isPostgres, type TestDatabase } from './db.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

export interface CliDatabase {
  clone: TestDatabase;
  env: Record<string, string | undefined>;
  /** Runs `fn` with the database open (on PGlite it is opened for the call and closed after). */
  db<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  run(argv: string[], opts?: { isTTY?: boolean; stdin?: string; env?: Record<string, string | undefined> }): Promise<CliResult>;
  close(): Promise<void>;
}

const FLAG_VARS = [
  'ENFORCE_SESSION_GATED_CHAT',
  'ENFORCE_SESSION_GATED_BILLING',
  'DISABLE_LEGACY_APPOINTMENT_TRIGGERS',
  'ALLOW_LEGACY_APPOINTMENT_CHAT',
];

export async function cliDatabase(extraEnv: Record<string, string | undefined> = {}): Promise<CliDatabase> {
  const clone = await cloneTestDatabase();
  const env: Record<string, string | undefined> = {
    DATABASE_URL: clone.databaseUrl ?? undefined,
    DATA_DIR: clone.dataDir || '/nonexistent',
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: 'silent',
    ...Object.fromEntries(FLAG_VARS.map((f) => [f, undefined])),
    ...extraEnv,
  };
  let shared: Database | null = null;
  const open = () => openDatabase({ databaseUrl: clone.databaseUrl, dataDir: clone.dataDir });
  return {
    clone,
    env,
    async db(fn) {
      if (isPostgres) {
        shared ??= await open();
        return fn(shared.db);
      }
      const d = await open();
      try {
        return await fn(d.db);
      } finally {
        await d.close();
      }
    },
    async run(argv, opts = {}) {
      return withEnv({ ...env, ...opts.env }, async () => {
        let out = '';
        let err = '';
        const stdin = opts.stdin === undefined ? Readable.from([]) : stdinFrom(opts.stdin);
        const io: CommandIO = {
          stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
          stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
          stdin,
          isTTY: opts.isTTY ?? false,
        };
        const code = await main(argv, io);
        return { code, out, err };
      });
    },
    async close() {
      await shared?.close();
      await clone.drop();
    },
  };
}

function stdinFrom(text: string): Readable {
  const s = new PassThrough();
  s.end(text);
  return s;
}

async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}
