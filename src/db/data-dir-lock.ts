/**
 * The owner lock of an embedded data directory: `DATA_DIR/sessiongate.lock` holds the pid of the
 * one process that has the PGlite files open, its role and the Unix socket it serves them on.
 * It is created with O_EXCL (`wx`), so of two processes starting together exactly one owns the
 * directory. A lock whose process is no longer running (the owner was killed, or the machine
 * restarted and its pid now names another process) is stale: it is taken
 * over under a second exclusive file, so two processes finding the same stale lock cannot both
 * take it. `DATA_DIR/sessiongate.pid` holds the pid of the serving process (for `kill -HUP`).
 */
import { closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = 'sessiongate.lock';
export const PID_FILE = 'sessiongate.pid';
const TAKEOVER_FILE = 'sessiongate.lock.takeover';

export interface LockRecord {
  pid: number;
  /** `cli`, `serve`, `start`, `worker`, … */
  role: string;
  /** The Unix socket the owner serves the database on; null while starting or for a one-shot command. */
  socket: string | null;
  /** When the lock was taken (ISO). */
  since: string;
  /**
   * Which process instance holds it: the boot and the start time of `pid` (Linux), so a pid the
   * system gave to another process after a reboot or a crash is not mistaken for the owner.
   * Null where the system does not say.
   */
  instance?: string | null;
}

export function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** `<boot id>:<start time in clock ticks>` of a running process, from /proc; null elsewhere or when it is gone. */
export function processInstance(pid: number): string | null {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (2nd field) is in parentheses and may contain spaces; start time is field 22.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return start ? `${boot}:${start}` : null;
  } catch {
    return null;
  }
}

/** Whether the process that wrote `holder` still runs: its pid is alive and, where known, is the same process instance. */
export function holderAlive(holder: Pick<LockRecord, 'pid' | 'instance'>): boolean {
  if (!isAlive(holder.pid)) return false;
  if (!holder.instance) return true;
  const now = processInstance(holder.pid);
  return now === null || now === holder.instance;
}

export function readLock(dataDir: string): LockRecord | null {
  let text: string;
  try {
    text = readFileSync(join(dataDir, LOCK_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    const v = JSON.parse(text) as Partial<LockRecord>;
    if (typeof v.pid !== 'number') return { pid: 0, role: 'unknown', socket: null, since: '' };
    return {
      pid: v.pid,
      role: String(v.role ?? 'unknown'),
      socket: typeof v.socket === 'string' ? v.socket : null,
      since: String(v.since ?? ''),
      instance: typeof v.instance === 'string' ? v.instance : null,
    };
  } catch {
    // Written by a process killed between create and write: no live owner can be named.
    return { pid: 0, role: 'unknown', socket: null, since: '' };
  }
}

function createExclusive(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

export type LockAttempt = { acquired: true; lock: DataDirLock } | { acquired: false; holder: LockRecord };

/** One attempt to own `dataDir`: the lock, or the live holder's record. */
export function tryLock(dataDir: string, role: string): LockAttempt {
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 5; attempt++) {
    const record: LockRecord = { pid: process.pid, role, socket: null, since: new Date().toISOString(), instance: processInstance(process.pid) };
    if (createExclusive(path, JSON.stringify(record))) return { acquired: true, lock: new DataDirLock(dataDir, record) };
    const holder = readLock(dataDir);
    if (holder === null) continue; // released in between
    // An unreadable record may be one being written this instant: stale only if it stays so.
    if (holder.pid !== 0 && holderAlive(holder)) return { acquired: false, holder };
    takeOverStale(dataDir, holder);
  }
  const holder = readLock(dataDir);
  return { acquired: false, holder: holder ?? { pid: 0, role: 'unknown', socket: null, since: '' } };
}

/** Removes a stale lock, unless another process is taking it over or it changed meanwhile. */
function takeOverStale(dataDir: string, stale: LockRecord): void {
  const takeover = join(dataDir, TAKEOVER_FILE);
  if (!createExclusive(takeover, String(process.pid))) {
    // Another process is taking over; a takeover file left by a killed process is stale too.
    const pid = Number(readFileSafe(takeover));
    if (!isAlive(pid)) rmSync(takeover, { force: true });
    return;
  }
  try {
    const now = readLock(dataDir);
    if (now && now.pid === stale.pid && now.since === stale.since) {
      rmSync(join(dataDir, LOCK_FILE), { force: true });
      if (stale.socket) rmSync(stale.socket, { force: true });
      rmSync(join(dataDir, PID_FILE), { force: true });
    }
  } finally {
    rmSync(takeover, { force: true });
  }
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export class DataDirLock {
  private released = false;

  constructor(
    readonly dataDir: string,
    private record: LockRecord,
  ) {
    // A process that exits without closing the database (process.exit, a second signal) still
    // leaves no lock behind; after a crash or SIGKILL the next opener finds it stale.
    process.once('exit', this.onExit);
  }

  private readonly onExit = () => this.release();

  /** Publishes the socket the database is served on (clients read it from the lock). */
  setSocket(socket: string): void {
    this.record = { ...this.record, socket };
    // Rewritten in place: the file keeps existing, so no other process can create it meanwhile.
    writeFileSync(join(this.dataDir, LOCK_FILE), JSON.stringify(this.record));
  }

  /** Writes DATA_DIR/sessiongate.pid (the serving process, for SIGHUP). */
  writePidFile(): void {
    writeFileSync(join(this.dataDir, PID_FILE), `${process.pid}\n`);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    process.off('exit', this.onExit);
    const current = readLock(this.dataDir);
    if (current && current.pid !== process.pid) return;
    if (readFileSafe(join(this.dataDir, PID_FILE)).trim() === String(process.pid)) rmSync(join(this.dataDir, PID_FILE), { force: true });
    rmSync(join(this.dataDir, LOCK_FILE), { force: true });
  }
}
