/**
 * Prepares one migrated template per run: a PostgreSQL template database when DATABASE_URL is
 * set, otherwise a PGlite data directory. Each test file clones it (fast) instead of migrating.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/index.js';
import { migrate } from '../../src/db/migrate.js';

const ROOT = join(import.meta.dirname, '..', '..');

export default async function setup(project: TestProject) {
  const url = process.env['DATABASE_URL'];
  if (url) {
    const template = `sg_tpl_${process.pid}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`drop database if exists ${template}`);
    await admin.query(`create database ${template}`);
    const tplUrl = withDatabase(url, template);
    const database = await openDatabase({ databaseUrl: tplUrl, dataDir: '' });
    await migrate(database.db);
    await database.close();
    project.provide('templateDatabase', template);
    project.provide('pgliteTemplate', '');
    return async () => {
      // Clones of this run that a crashed test left behind, then the template itself.
      const left = await admin.query<{ datname: string }>(`select datname from pg_database where datname like 'sg_t_${process.pid}_%'`);
      for (const r of left.rows) await admin.query(`drop database if exists ${r.datname} with (force)`).catch(() => {});
      await admin.query(`drop database if exists ${template} with (force)`);
      await admin.end();
    };
  }
  const dir = join(ROOT, '.tmp', `pglite-template-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const database = await openDatabase({ databaseUrl: null, dataDir: dir });
  await migrate(database.db);
  await database.close();
  project.provide('templateDatabase', '');
  project.provide('pgliteTemplate', dir);
  return () => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(ROOT, '.tmp', `pglite-${process.pid}`), { recursive: true, force: true });
  };
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string;
    pgliteTemplate: string;
  }
}




