/**
 * The embedded database as one owner and many clients. The first process to lock DATA_DIR opens
 * the PGlite files; a serving owner (`npm start`, `serve`, `worker`) also serves them on a Unix
 * socket. Every other process connects through that socket with `pg` — the same code path as
 * PostgreSQL — and never opens the files. While the directory is held by a one-shot command (or
 * an owner still starting), others wait for it, up to a limit, then say who holds it.
 */
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, resolve } from 'node:path';
import pg from 'pg';
import { tryLock, type DataDirLock, type LockRecord } from './data-dir-lock.js';
import { OwnerServer } from './owner-server.js';
import { acquireEmbedded, type EmbeddedHost } from './pglite-open.js';

export class DataDirBusyError extends Error {
  readonly code = 'DATA_DIR_BUSY';
}

export interface EmbeddedOptions {
  dataDir: string;
  /** Who opens it (recorded in the lock, shown to those who wait). */
  role: string;
  /** Serve the directory to other processes when this process becomes its owner. */
  serve: boolean;
  /** How long to wait for an owner that is starting, or a command holding the directory. */
  waitMs: number;
  /** Told once when this process starts waiting. */
  onWait?: (holder: LockRecord) => void;
}

export type EmbeddedOpening =
  { kind: 'owner'; host: EmbeddedHost; socketPath: string | null; close: () => Promise<void> } | { kind: 'client'; socketPath: string };

/** The directories this process owns: a second open in the same process shares the first. */
const owned = new Map<
  string,
  { opening: Promise<Extract<EmbeddedOpening, { kind: 'owner' }>>; refs: number; release: () => Promise<void> }
>();

export async function openEmbedded(opts: EmbeddedOptions): Promise<EmbeddedOpening> {
  const dir = resolve(opts.dataDir);
  mkdirSync(dir, { recursive: true });
  const deadline = Date.now() + opts.waitMs;
  let told = false;
  for (;;) {
    const mine = owned.get(dir);
    if (mine) return shareOwned(dir, mine);
    const attempt = tryLock(dir, opts.role);
    if (attempt.acquired) return becomeOwner(dir, attempt.lock, opts.serve);
    const holder = attempt.holder;
    if (holder.socket && (await canConnect(holder.socket))) return { kind: 'client', socketPath: holder.socket };
    if (Date.now() >= deadline) {
      throw new DataDirBusyError(
        `the embedded database in ${dir} is held by process ${holder.pid} (sessiongate ${holder.role}, since ${holder.since || 'unknown'}), ` +
          `which does not serve it to other processes: run this again when it has finished, or stop it`,
      );
    }
    if (!told) opts.onWait?.(holder);
    told = true;
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function becomeOwner(dir: string, lock: DataDirLock, serve: boolean): Promise<EmbeddedOpening> {
  const opening = (async () => {
    let acquired: Awaited<ReturnType<typeof acquireEmbedded>>;
    try {
      acquired = await acquireEmbedded(dir);
    } catch (err) {
      lock.release();
      throw err;
    }
    let server: OwnerServer | null = null;
    if (serve) {
      try {
        server = new OwnerServer(acquired.host, dir);
        await server.start();
        lock.setSocket(server.socketPath);
        lock.writePidFile();
      } catch (err) {
        await server?.stop();
        await acquired.release();
        lock.release();
        throw err;
      }
    }
    const close = async () => {
      await server?.stop();
      await acquired.release();
      lock.release();
    };
    return { kind: 'owner' as const, host: acquired.host, socketPath: server?.socketPath ?? null, close };
  })();
  const entry = { opening, refs: 0, release: async () => (await opening).close() };
  owned.set(dir, entry);
  opening.catch(() => owned.delete(dir));
  return shareOwned(dir, entry);
}

async function shareOwned(dir: string, entry: NonNullable<ReturnType<typeof owned.get>>): Promise<EmbeddedOpening> {
  entry.refs += 1;
  let opened: Extract<EmbeddedOpening, { kind: 'owner' }>;
  try {
    opened = await entry.opening;
  } catch (err) {
    entry.refs -= 1;
    throw err;
  }
  let closed = false;
  return {
    ...opened,
    close: async () => {
      if (closed) return;
      closed = true;
      entry.refs -= 1;
      if (entry.refs > 0) return;
      owned.delete(dir);
      await entry.release();
    },
  };
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((ok) => {
    const s = connect(socketPath);
    const done = (v: boolean) => {
      s.destroy();
      ok(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1_000, () => done(false));
  });
}

/** `pg` settings reaching the owner's socket (host is the socket's directory). */
export function socketPoolConfig(socketPath: string): pg.PoolConfig {
  return { host: dirname(socketPath), port: 5432, user: 'postgres', database: 'postgres' };
}
