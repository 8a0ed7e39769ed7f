/**
 * The database: PostgreSQL when DATABASE_URL is set, otherwise embedded PGlite in DATA_DIR.
 * Both speak the same SQL; the differences are contained here (connection handling, LISTEN).
 */
import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import type { LockRecord } from './data-dir-lock.js';
import { openEmbedded, socketPoolConfig } from './embedded.js';
import { PGliteDialect } from './pglite-dialect.js';
import type { DB } from './types.js';

export type DatabaseKind = 'postgres' | 'pglite';

export interface Database {
  kind: DatabaseKind;
  db: Kysely<DB>;
  /** The PostgreSQL pool (postgres only): LISTEN connections and fault tests use it. */
  pool: pg.Pool | null;
  /** The embedded instance (pglite only). */
  pglite: PGlite | null;
  /**
   * Embedded: the owner's socket when this process serves DATA_DIR (kind `pglite`), or the socket
   * it reaches the owner through (kind `postgres`); null otherwise.
   */
  socketPath: string | null;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

// int8 and numeric come back as strings from `pg`; our ids and minor units fit in doubles
// (sequences stay far below 2^53), so they are parsed as numbers once, here.
const INT8_OID = 20;
const INT8_ARRAY_OID = 1016;
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return (v: string) => Number(v);
    if (oid === INT8_ARRAY_OID) {
      const parseArray = (pg.types.getTypeParser as (id: number, f: 'text') => (v: string) => (string | null)[])(INT8_ARRAY_OID, 'text');
      return (v: string) => parseArray(v).map((x) => (x === null ? null : Number(x)));
    }
    return pg.types.getTypeParser(oid, format);
  },
};

/**
 * A hot statement run as a named prepared statement on PostgreSQL: planned once per pooled
 * connection instead of on every call (for a statement with joins or CTEs, planning can cost more
 * than running it). PGlite runs it as a plain query. Parameters are `$1…` in `text`; bump the
 * name's version when the text changes.
 */
export interface PreparedStatement {
  name: string;
  text: string;
}

export async function runPrepared<R extends pg.QueryResultRow>(
  database: Pick<Database, 'kind' | 'pool' | 'db'>,
  statement: PreparedStatement,
  values: unknown[],
): Promise<R[]> {
  if (database.kind === 'postgres' && database.pool) {
    return (await database.pool.query<R>({ name: statement.name, text: statement.text, values })).rows;
  }
  return (await database.db.executeQuery<R>(CompiledQuery.raw(statement.text, values))).rows;
}

export interface DatabaseOptions {
  databaseUrl: string | null;
  dataDir: string;
  poolSize?: number;
  /** Application name shown in pg_stat_activity (role of the process). */
  applicationName?: string;
  /** Embedded: who opens DATA_DIR (recorded in its lock). */
  role?: string;
  /** Embedded: serve DATA_DIR to the machine's other processes if this process becomes its owner. */
  serve?: boolean;
  /** Embedded: how long to wait while DATA_DIR is held by a command or an owner still starting (default 60 s). */
  waitMs?: number;
  onWait?: (holder: LockRecord) => void;
}

function createPool(config: pg.PoolConfig, opts: DatabaseOptions): pg.Pool {
  const pool = new pg.Pool({
    ...config,
    max: opts.poolSize ?? 10,
    types,
    application_name: opts.applicationName ?? 'sessiongate',
    connectionTimeoutMillis: 5_000,
    // A statement that hangs (a lock held by a crashed peer, a dead server) must fail, not
    // hold a request forever.
    statement_timeout: 30_000,
    idleTimeoutMillis: 30_000,
    // TCP keepalive: a connection whose peer vanished (no FIN: a dead host, a dropped NAT entry)
    // is eventually reported as an error instead of waiting forever — the event bus's LISTEN
    // connection above all, which otherwise only reads.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  // An idle client losing its connection (server restart, pg_terminate_backend) emits here;
  // without a listener it would crash the process.
  pool.on('error', () => {});
  // Likewise a checked-out client whose server goes away: the query in flight rejects (and
  // becomes a 503); the client's own 'error' event must not become an uncaught exception.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

function postgresDatabase(pool: pg.Pool, socketPath: string | null): Database {
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  return { kind: 'postgres', db, pool, pglite: null, socketPath, ping: () => ping(db), close: () => db.destroy() };
}

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  if (opts.databaseUrl) return postgresDatabase(createPool({ connectionString: opts.databaseUrl }, opts), null);
  const opened = await openEmbedded({
    dataDir: opts.dataDir,
    role: opts.role ?? 'sessiongate',
    serve: opts.serve ?? false,
    waitMs: opts.waitMs ?? 60_000,
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
  });
  // Another process owns DATA_DIR: talk to it like to any PostgreSQL.
  if (opened.kind === 'client') return postgresDatabase(createPool(socketPoolConfig(opened.socketPath), opts), opened.socketPath);
  const { pglite, mutex } = opened.host;
  const db = new Kysely<DB>({ dialect: new PGliteDialect(pglite, mutex, opened.close) });
  return { kind: 'pglite', db, pool: null, pglite, socketPath: opened.socketPath, ping: () => ping(db), close: () => db.destroy() };
}

async function ping(db: Kysely<DB>): Promise<boolean> {
  try {
    await sql`select 1`.execute(db);
    return true;
  } catch {
    return false;
  }
}
