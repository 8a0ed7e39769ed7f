/**
 * A throw-away PostgreSQL server of the test's own (initdb into a temp dir, its own port), so a
 * fault test can stop and restart "the database server" without touching the shared one the
 * rest of the suite uses. Needs root (to run the server as the postgres user) and the Debian
 * PostgreSQL binaries; `available()` says whether this machine has both.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const PG_ROOT = '/usr/lib/postgresql';

function binDir(): string | null {
  if (!existsSync(PG_ROOT)) return null;
  const versions = readdirSync(PG_ROOT).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (existsSync(join(PG_ROOT, v, 'bin', 'pg_ctl'))) return join(PG_ROOT, v, 'bin');
  return null;
}

export function privatePostgresAvailable(): boolean {
  return process.getuid?.() === 0 && binDir() !== null && existsSync('/usr/sbin/runuser');
}

export class PrivatePostgres {
  private readonly dir: string;
  private readonly bin: string;
  constructor(readonly port: number) {
    this.bin = binDir()!;
    this.dir = mkdtempSync('/tmp/sessiongate-pg-');
    chownSync(this.dir, uidOf('postgres'), gidOf('postgres'));
    this.asPostgres('initdb', ['-D', this.data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private get data(): string {
    return join(this.dir, 'data');
  }

  private asPostgres(tool: string, args: string[]): void {
    execFileSync('/usr/sbin/runuser', ['-u', 'postgres', '--', join(this.bin, tool), ...args], { stdio: 'ignore', timeout: 60_000 });
  }

  start(): void {
    this.asPostgres('pg_ctl', [
      '-D',
      this.data,
      '-l',
      join(this.dir, 'log'),
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      '-w',
      'start',
    ]);
  }

  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    this.asPostgres('pg_ctl', ['-D', this.data, '-m', mode, '-w', 'stop']);
  }

  destroy(): void {
    try {
      this.stop('immediate');
    } catch {
      /* already stopped */
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function uidOf(user: string): number {
  return Number(execFileSync('id', ['-u', user]).toString().trim());
}
function gidOf(user: string): number {
  return Number(execFileSync('id', ['-g', user]).toString().trim());
}
