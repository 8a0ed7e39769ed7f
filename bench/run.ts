/**
 * `npm run bench`: every benchmark, one after the other (each prints its own JSON and table with
 * the ratios against its side-by-side baseline). Name some to run only those:
 *
 *   npm run bench                       # startup, auto-start, chat, contracts, load (~30 minutes)
 *   npm run bench -- chat load
 *
 * Run on a quiet machine: the benchmarks share its cores with PostgreSQL and the load generator.
 */
import { spawnSync } from 'node:child_process';

const ALL = ['startup', 'auto-start', 'chat', 'contracts', 'load'] as const;
const asked = process.argv.slice(2);
const unknown = asked.filter((a) => !(ALL as readonly string[]).includes(a));
if (unknown.length > 0) {
  console.error(`Unknown benchmark: ${unknown.join(', ')}. Choose from: ${ALL.join(', ')}.`);
  process.exit(1);
}
const failed: string[] = [];
for (const name of asked.length > 0 ? asked : ALL) {
  console.log(`\n=== npm run bench:${name} ===`);
  const r = spawnSync('npm', ['run', `bench:${name}`], { stdio: 'inherit' });
  if (r.status !== 0) failed.push(name);
}
if (failed.length > 0) {
  console.error(`\nFailed: ${failed.join(', ')}`);
  process.exit(1);
}
