/**
 * The embedded data directory's owner lock, against the records a crash or a reboot leaves
 * behind: a lock is honoured only while the very process that wrote it runs.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCK_FILE, processInstance, tryLock } from '../../src/db/data-dir-lock.js';

const dirs: string[] = [];
const children: ReturnType<typeof spawn>[] = [];
const dataDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'sg-lock-'));
  dirs.push(d);
  return d;
};
/** A live process that is not a sessiongate owner (as after a reboot, when its pid is reused). */
const bystander = () => {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  children.push(child);
  return child.pid!;
};
const writeLock = (dir: string, record: object) => writeFileSync(join(dir, LOCK_FILE), JSON.stringify(record));

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe.skipIf(processInstance(process.pid) === null)('the owner lock on Linux', () => {
  it('records which process instance holds it', () => {
    const dir = dataDir();
    const r = tryLock(dir, 'serve');
    expect(r.acquired).toBe(true);
    const record = JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'));
    expect(record).toMatchObject({ pid: process.pid, role: 'serve', instance: processInstance(process.pid) });
    if (r.acquired) r.lock.release();
  });

  it('is refused while its process runs', () => {
    const dir = dataDir();
    const pid = bystander();
    writeLock(dir, { pid, role: 'serve', socket: null, since: '2026-11-30T00:00:00Z', instance: processInstance(pid) });
    const r = tryLock(dir, 'cli');
    expect(r).toMatchObject({ acquired: false, holder: { pid, role: 'serve' } });
  });

  it('is taken over when its pid now names another process (a reboot reused it)', () => {
    const dir = dataDir();
    const pid = bystander();
    const [boot] = processInstance(pid)!.split(':');
    writeLock(dir, { pid, role: 'serve', socket: null, since: '2026-11-29T00:00:00Z', instance: `${boot}:1` });
    const r = tryLock(dir, 'cli');
    expect(r.acquired).toBe(true);
    if (r.acquired) r.lock.release();
  });

  it('a lock of an older version (no instance) is honoured by pid alone', () => {
    const dir = dataDir();
    const pid = bystander();
    writeLock(dir, { pid, role: 'serve', socket: null, since: '2026-11-30T00:00:00Z' });
    expect(tryLock(dir, 'cli').acquired).toBe(false);
  });
});
