/**
 * A fresh database per test file, cloned from the run's migrated template:
 * PostgreSQL `create database … template …`, or a copy of the PGlite data directory.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';

export const isPostgres = Boolean(process.env['DATABASE_URL']);

export interface TestDatabase {
  databaseUrl: string | null;
  dataDir: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function cloneTestDatabase(): Promise<TestDatabase> {
  const suffix = `${process.ppid}_${randomBytes(5).toString('hex')}`;
  const url = process.env['DATABASE_URL'];
  if (url) {
    const name = `sg_t_${suffix}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`create database ${name} template ${inject('templateDatabase')}`);
    } finally {
      await admin.end();
    }
    return {
      databaseUrl: withDatabase(url, name),
      dataDir: '',
      async drop() {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        await c.query(`drop database if exists ${name} with (force)`).catch(() => {});
        await c.end();
      },
    };
  }
  const dir = join(import.meta.dirname, '..', '..', '.tmp', `pglite-${process.ppid}`, suffix);
  cpSync(inject('pgliteTemplate'), dir, { recursive: true });
  return {
    databaseUrl: null,
    dataDir: dir,
    async drop() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
