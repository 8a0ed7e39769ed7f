/**
 * What the HTTP benchmarks share: the server process (bench/server.ts: the API built exactly as
 * `sessiongate serve` builds it, and the minimal insert route), conversations made in SQL, one
 * autocannon window measured with the CPU it cost the API and PostgreSQL, and the statistics of the
 * rounds.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import pg from 'pg';
import { signToken } from '../src/lib/auth.js';

export const SECRET = 'bench-secret-bench-secret-bench-secret-000';
/** A load generator sends as hundreds of people at once from a few users: lift the per-user limits. */
export const NO_USER_LIMITS = {
  RATE_LIMIT_CHAT_BURST: '1000000',
  RATE_LIMIT_WRITE_PER_MINUTE: '1000000',
  RATE_LIMIT_CREATE_PER_MINUTE: '1000000',
  RATE_LIMIT_WS_CONNECT_PER_MINUTE: '1000000',
  WS_MAX_CONNECTIONS_PER_USER: '10000',
};
export const BODY = 'Good morning doctor, the headache is better today but I still feel tired.';

export const log = (msg: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);

export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
export const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// ---- data -----------------------------------------------------------------------------------

export interface Conversation {
  appointment: number;
  session: number;
  patient: number;
  doctor: number;
  patientToken: string;
  doctorToken: string;
}

/**
 * `n` active text sessions, each from its own appointment, with `messages` messages each (the first
 * from the doctor, then alternating).
 */
export async function conversations(databaseUrl: string, n: number, tag: string, messages = 1): Promise<Conversation[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const r = await c.query<{ appointment: number; session: number; patient: number; doctor: number }>(
      `with d as (insert into users (role, name) select 'doctor', 'Dr ' || $2 || g from generate_series(1, $1) g returning id),
            p as (insert into users (role, name) select 'patient', 'Patient ' || $2 || g from generate_series(1, $1) g returning id),
            pairs as (select p.id as pid, d.id as did, row_number() over () as i
                        from (select id, row_number() over (order by id) rn from p) p
                        join (select id, row_number() over (order by id) rn from d) d using (rn)),
            a as (insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
                  select pid, did, 'text', 'in_progress', now() - interval '1 minute' from pairs returning id, patient_id, doctor_id),
            s as (insert into sessions (kind, modality, source, appointment_id, patient_id, doctor_id, status, activated_at, credits_at_start)
                  select 'text', 'text', 'APPOINTMENT', a.id, a.patient_id, a.doctor_id, 'active', now(), 100 from a
                  returning id, appointment_id, patient_id, doctor_id)
       select appointment_id::int as appointment, id::int as session, patient_id::int as patient, doctor_id::int as doctor from s order by id`,
      [n, tag],
    );
    const sessions = r.rows.map((row) => row.session);
    await c.query(`update appointments a set session_id = s.id from sessions s where s.id = any($1) and s.appointment_id = a.id`, [
      sessions,
    ]);
    await c.query(
      `insert into messages (session_id, sender_id, type, body)
       select s.id, case when g % 2 = 1 then s.doctor_id else s.patient_id end, 'text', $2 || ' (' || g || ')'
         from sessions s, generate_series(1, $3) g where s.id = any($1) order by s.id, g`,
      [sessions, 'Hello, how can I help?', messages],
    );
    return Promise.all(
      r.rows.map(async (row) => ({
        ...row,
        patientToken: await signToken(SECRET, { sub: row.patient, role: 'patient' }, 7200),
        doctorToken: await signToken(SECRET, { sub: row.doctor, role: 'doctor' }, 7200),
      })),
    );
  } finally {
    await c.end();
  }
}

/** Vacuum and analyse the bench database, then checkpoint: every window starts from the same state. */
export async function settle(databaseUrl: string): Promise<void> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    await c.query('vacuum (analyze)');
    await c.query('checkpoint');
  } finally {
    await c.end();
  }
}

// ---- the server process ---------------------------------------------------------------------

/** The ports of the server process (bench/server.ts): the API and the minimal insert route. */
export interface ServerPorts {
  api: number;
  minimal: number;
}

export interface BenchServer {
  child: ChildProcess;
  ports: ServerPorts;
  /** BENCH_PROFILE=<dir>: start / stop (and write) a CPU profile of the server process. */
  profile(on: boolean): Promise<void>;
  stop(): Promise<void>;
}

/** Forks the one server process of the HTTP benchmarks (bench/server.ts) and waits for its ports. */
export async function startServer(databaseUrl: string): Promise<BenchServer> {
  const script = new URL('./server.ts', import.meta.url).pathname;
  const child = fork(script, [databaseUrl], { execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const ports = await new Promise<ServerPorts>((resolve, reject) => {
    child.once('message', (m) => resolve(m as ServerPorts));
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return {
    child,
    ports,
    async profile(on) {
      if (!process.env['BENCH_PROFILE']) return;
      if (on) {
        child.send('profile-start');
        return;
      }
      const written = new Promise<void>((resolve) => {
        const done = (m: unknown) => {
          if ((m as { profiled?: boolean }).profiled) {
            child.off('message', done);
            resolve();
          }
        };
        child.on('message', done);
      });
      child.send('profile-stop');
      await written;
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.send('stop');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

const childCpu = (child: ChildProcess) =>
  new Promise<number>((resolve) => {
    const on = (m: unknown) => {
      const cpu = (m as { cpu?: { user: number; system: number } }).cpu;
      if (!cpu) return;
      child.off('message', on);
      resolve(cpu.user + cpu.system);
    };
    child.on('message', on);
    child.send('cpu');
  });

// ---- one measured window ----------------------------------------------------------------------

export interface Sample {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU time of the API process per request (user + system), µs: robust on a busy machine. */
  cpuUs: number;
  /** CPU time of all PostgreSQL processes per request, µs (null when the server is not local). */
  dbCpuUs: number | null;
}

/** Linux's USER_HZ: the unit of the CPU times in /proc/<pid>/stat. */
const CLOCK_TICKS = 100;

/**
 * CPU time (µs) used so far by every PostgreSQL process on this host: each one's own user + system
 * time plus that of its exited children (only the postmaster has any: the backends that ended).
 * Null when no local PostgreSQL is visible in /proc (a remote database).
 */
export function postgresCpuUs(): number | null {
  let ticks = 0;
  let seen = false;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const close = stat.lastIndexOf(')');
    if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
    seen = true;
    // Fields after the command: state(3) … utime(14) stime(15) cutime(16) cstime(17).
    const f = stat.slice(close + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return seen ? (ticks * 1e6) / CLOCK_TICKS : null;
}

/**
 * One autocannon window against `port`: each connection keeps to one conversation (as in real use:
 * one participant works in one session at a time), its requests made by `requestFor`. Any non-2xx
 * answer counts as an error.
 */
export async function measure(
  child: ChildProcess,
  port: number,
  convs: Conversation[],
  requestFor: (c: Conversation) => autocannon.Request,
  opts: { connections: number; seconds: number },
): Promise<Sample> {
  let nextConnection = 0;
  const requests = [requestFor(convs[0]!)];
  const setupClient = (client: autocannon.Client) => client.setRequests([requestFor(convs[nextConnection++ % convs.length]!)]);
  const cpu0 = await childCpu(child);
  const db0 = postgresCpuUs();
  const r = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: opts.connections,
    duration: opts.seconds,
    requests,
    setupClient,
  });
  const db1 = postgresCpuUs();
  const cpu1 = await childCpu(child);
  const n = Math.max(1, r.requests.total);
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
    cpuUs: (cpu1 - cpu0) / n,
    dbCpuUs: db0 === null || db1 === null ? null : (db1 - db0) / n,
  };
}
