/**
 * Opening the embedded PostgreSQL (PGlite) in a data directory: start parameters sized for one
 * machine, and one clear sentence when the directory cannot be opened (never PGlite's own output).
 * Within one process a directory is opened once and shared (reference-counted), so in-process
 * callers never open the files twice either.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { Mutex } from './mutex.js';

/** The PostgreSQL major version of the bundled PGlite. */
export const PG_MAJOR = '18';

/**
 * PGlite's own defaults (single-user mode, no parallel workers) with the memory sized for an
 * embedded server: shared_buffers 32 MB instead of 128 MB.
 */
const START_PARAMS = [
  '--single',
  '-F',
  '-O',
  '-j',
  ...['search_path=public', 'exit_on_error=false', 'log_checkpoints=false', 'io_method=sync'].flatMap((s) => ['-c', s]),
  ...[
    'max_worker_processes=0',
    'max_parallel_workers=0',
    'max_parallel_workers_per_gather=0',
    'max_parallel_maintenance_workers=0',
  ].flatMap((s) => ['-c', s]),
  ...['shared_buffers=32MB', 'max_connections=10', 'wal_buffers=1MB'].flatMap((s) => ['-c', s]),
];

/** The data directory cannot be opened: the message says what, where and what to do. */
export class DataDirError extends Error {
  readonly code = 'DATA_DIR_UNUSABLE';
}

/** One opened PGlite and the lock that serialises everyone using it. */
export interface EmbeddedHost {
  pglite: PGlite;
  mutex: Mutex;
}

const open = new Map<string, { host: Promise<EmbeddedHost>; refs: number }>();

export async function acquireEmbedded(dataDir: string): Promise<{ host: EmbeddedHost; release: () => Promise<void> }> {
  const key = resolve(dataDir);
  let entry = open.get(key);
  if (!entry) {
    entry = { host: openPglite(key), refs: 0 };
    open.set(key, entry);
    entry.host.catch(() => open.delete(key));
  }
  entry.refs += 1;
  const mine = entry;
  let host: EmbeddedHost;
  try {
    host = await mine.host;
  } catch (err) {
    mine.refs -= 1;
    throw err;
  }
  let released = false;
  return {
    host,
    release: async () => {
      if (released) return;
      released = true;
      mine.refs -= 1;
      if (mine.refs > 0) return;
      open.delete(key);
      // Waits for whoever holds the database (a transaction in flight) before closing it.
      const unlock = await host.mutex.lock();
      try {
        if (!host.pglite.closed) await host.pglite.close();
      } finally {
        unlock();
      }
    },
  };
}

async function openPglite(dataDir: string): Promise<EmbeddedHost> {
  const versionFile = join(dataDir, 'PG_VERSION');
  const version = existsSync(versionFile) ? readFileSync(versionFile, 'utf8').trim() : null;
  if (version !== null && version !== PG_MAJOR) {
    throw new DataDirError(
      `the embedded database in ${dataDir} was created by PostgreSQL ${version} (an older sessiongate) and this version runs PostgreSQL ${PG_MAJOR}: ` +
        `export it with the older version (pg_dump through its socket) or move it aside (mv ${dataDir} ${dataDir}.old) to start with an empty one`,
    );
  }
  const stderr: string[] = [];
  const { PGlite } = await import('@electric-sql/pglite');
  let pglite: PGlite | null = null;
  try {
    pglite = new PGlite(dataDir, {
      startParams: START_PARAMS,
      onStderr: (text) => {
        if (stderr.length < 50) stderr.push(text);
        return true;
      },
      onStdout: () => true,
    });
    await pglite.waitReady;
    return { pglite, mutex: new Mutex() };
  } catch (err) {
    if (pglite && !pglite.closed) await pglite.close().catch(() => {});
    throw new DataDirError(
      `the embedded database in ${dataDir} cannot be opened (${reasonOf(err, stderr)}): ` +
        `restore it from a backup, or move it aside (mv ${dataDir} ${dataDir}.damaged) to start with an empty one`,
    );
  }
}

/** PostgreSQL's own FATAL/PANIC line when there is one, else the error's first line. */
function reasonOf(err: unknown, stderr: string[]): string {
  const fatal = stderr.find((l) => /\b(FATAL|PANIC|ERROR):/.test(l));
  if (fatal)
    return fatal
      .replace(/^.*?\b(FATAL|PANIC|ERROR):\s*/, '')
      .trim()
      .slice(0, 200);
  const message = err instanceof Error ? err.message : String(err);
  const first = message.split('\n')[0]?.trim() ?? '';
  return first && first.length < 200 && !/^Aborted\(/.test(first) ? first : 'PGlite aborted while reading it';
}
