/**
 * Real processes for tests: the CLI and the server run from source through tsx, with an
 * explicit environment (never the developer's .env), output captured, and bounded waits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const ROOT = join(import.meta.dirname, '..', '..');
const ENTRY = join(ROOT, 'test', 'helpers', 'cli-entry.ts');
// Resolved here, so the child can run from any working directory (a temp dir with its own .env).
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `sessiongate <args>` from source with `env` on top of a minimal base environment. */
export function spawnCli(args: string[], env: Record<string, string | undefined>, opts: { cwd?: string } = {}): Spawned {
  const child = spawn(process.execPath, ['--import', TSX, ENTRY, ...args], {
    cwd: opts.cwd ?? ROOT,
    // METRICS_PORT=0: workers of parallel tests must not all bind the default metrics port.
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], LOG_LEVEL: 'info', METRICS_PORT: '0', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs a CLI command to completion (bounded), returning its exit code and output. */
export async function runCli(
  args: string[],
  env: Record<string, string | undefined>,
  opts: { cwd?: string; timeoutMs?: number; input?: string } = {},
) {
  const p = spawnCli(args, env, opts);
  if (opts.input !== undefined) p.child.stdin!.end(opts.input);
  else p.child.stdin!.end();
  const timer = setTimeout(() => p.child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Polls `url` until it answers `status` (or the deadline passes). */
export async function waitForStatus(url: string, status = 200, timeoutMs = 20_000, init?: RequestInit): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, init);
      if (res.status === status) return true;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
