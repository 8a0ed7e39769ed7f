/**
 * Start-up and idle memory of `sessiongate serve` (targets and figures: docs/benchmarks.md): time from spawn to the
 * first 200 from /health/ready on an existing PGlite data directory and on PostgreSQL, and the
 * resident memory after 5 s idle. Runs the compiled CLI (npm run build first). Not a test.
 *
 *   npm run build && npx tsx bench/startup.ts
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScratchDatabase } from './scratch-database.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'sessiongate.js');
const PG_URL = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const RUNS = Number(process.env['RUNS'] ?? 5);
const SECRET = 'bench-secret-bench-secret-bench-secret-000';

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function once(env: Record<string, string>, port: number, measureRss: boolean) {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { PATH: process.env['PATH'], ...env, PORT: String(port), LOG_LEVEL: 'warn', JWT_SECRET: SECRET },
    stdio: 'ignore',
  });
  let readyMs = NaN;
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health/ready`);
      if (res.status === 200) {
        readyMs = performance.now() - started;
        break;
      }
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  let rss = NaN;
  if (measureRss) {
    await new Promise((r) => setTimeout(r, 5000));
    rss = rssMb(child.pid!);
  }
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  return { readyMs, rss };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function series(name: string, env: Record<string, string>) {
  await once(env, 3901, false); // first start migrates; measure existing databases only
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push((await once(env, 3901, false)).readyMs);
  const { rss } = await once(env, 3901, true);
  return { name, ready_ms_median: Math.round(median(times)), ready_ms_max: Math.round(Math.max(...times)), idle_rss_mb: Math.round(rss) };
}

const dataDir = mkdtempSync(join(tmpdir(), 'sg-startup-'));
const scratch = await createScratchDatabase(PG_URL, 'sg_bench_startup');
try {
  const results = [await series('pglite (existing data dir)', { DATA_DIR: dataDir }), await series('postgresql', { DATABASE_URL: scratch.url })];
  const targets = { 'pglite (existing data dir)': 3000, postgresql: 1500 };
  console.log(JSON.stringify({ runs: RUNS, results }, null, 2));
  console.log('\n| database | ready (median) | ready (max) | target | idle RSS | target |\n|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${r.name} | ${r.ready_ms_median} ms | ${r.ready_ms_max} ms | ≤ ${targets[r.name as keyof typeof targets]} ms | ${r.idle_rss_mb} MB | ≤ 150 MB |`);
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
  await scratch.drop();
}
