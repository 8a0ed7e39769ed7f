/**
 * Chat benchmark, measured side by side in one run on PostgreSQL:
 *
 *   (a) sending a message through the full session path — JWT + user look-up, context parsing,
 *       the session read and the rules, the insert under the session row lock, metrics, the
 *       event on the LISTEN/NOTIFY bus — vs a minimal Fastify route that inserts the same row (no auth, no
 *       checks, one INSERT … RETURNING): throughput and p50/p99 at 50 connections;
 *   (b) the legacy guarded route `POST /api/v2/chat/{appointmentId}/messages` on an appointment with a
 *       session, flags off (served by the session, warning logged, would-block counted and recorded
 *       as a guard event) vs the session route: the guard's overhead;
 *   (c) WebSocket delivery latency with 1,000 concurrent sessions × 2 connected participants:
 *       from issuing the HTTP send to the other participant's socket receiving `message.created`.
 *
 * The API and the minimal route run in the benchmarks' server process (bench/server.ts: its own
 * event loop, the API exactly as `sessiongate serve` builds it; the guard's warning lines are
 * written, batched as in production by LOG_BUFFER_BYTES).
 * Load comes from this process (autocannon for (a)/(b), `ws` clients and fetch for (c)). Cases
 * (a)/(b) run interleaved for ROUNDS rounds after a warm-up, each window starting from a vacuumed
 * and checkpointed database; each ratio is the median of the per-round ratios. Besides req/s and
 * latency, the CPU time per request of the API process and of PostgreSQL (all its processes, when
 * it runs on this host) is reported: it shows where a difference comes from.
 *
 *   npm run bench:chat     (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres;
 *                           creates and drops its own database)
 *   DURATION=10 ROUNDS=3 WS_SESSIONS=1000 WS_RATE=500 WS_SECONDS=20 npm run bench:chat
 *   BENCH_CASES=session,legacy BENCH_PROFILE=/tmp/prof npm run bench:chat   (a CPU profile of the API)
 *   LOG_BUFFER_BYTES=0 (each log line written at once), BENCH_INPROCESS_BUS=1 (no NOTIFY): what-ifs
 *
 * Not a test: prints JSON and a table.
 */
import type { ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import type autocannon from 'autocannon';
import WebSocket from 'ws';
import { openDatabase } from '../src/db/index.js';
import { migrate } from '../src/db/migrate.js';
import {
  BODY,
  conversations,
  log,
  mean,
  measure,
  median,
  round,
  settle,
  startServer,
  type Conversation,
  type Sample,
  type ServerPorts,
} from './http-harness.js';
import { createScratchDatabase } from './scratch-database.js';

const ADMIN_URL = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DURATION = Number(process.env['DURATION'] ?? 6);
const WARMUP = Number(process.env['WARMUP'] ?? 3);
const ROUNDS = Number(process.env['ROUNDS'] ?? 10);
const CONNECTIONS = Number(process.env['CONNECTIONS'] ?? 50);
const WS_SESSIONS = Number(process.env['WS_SESSIONS'] ?? 1000);
const WS_RATE = Number(process.env['WS_RATE'] ?? 500);
const WS_SECONDS = Number(process.env['WS_SECONDS'] ?? 20);
const POOL_SIZE = process.env['DB_POOL_SIZE'] ?? '10';
const LOG_BUFFER_BYTES = process.env['LOG_BUFFER_BYTES'] ?? '8192 (default)';
// ---- HTTP cases -----------------------------------------------------------------------------

type Case = 'minimal' | 'session' | 'legacy';

let server: ChildProcess;
let seq = 0;
async function load(kind: Case, ports: ServerPorts, convs: Conversation[], seconds: number): Promise<Sample> {
  // One conversation per connection (as in real use: one participant sends one message at a
  // time into their session), each request with a fresh client_message_id.
  const json = { 'content-type': 'application/json' };
  const requestFor = (c: Conversation): autocannon.Request => {
    const id = () => `b${process.pid}-${++seq}`;
    switch (kind) {
      case 'minimal':
        return {
          method: 'POST',
          path: `/minimal/${c.session}`,
          headers: json,
          setupRequest: (req) => ({
            ...req,
            body: JSON.stringify({ sender_id: c.patient, client_message_id: id(), type: 'text', body: BODY }),
          }),
        };
      case 'session':
        return {
          method: 'POST',
          path: `/api/v2/sessions/text_session:${c.session}/messages`,
          headers: { ...json, authorization: `Bearer ${c.patientToken}` },
          setupRequest: (req) => ({ ...req, body: JSON.stringify({ client_message_id: id(), type: 'text', body: BODY }) }),
        };
      case 'legacy':
        return {
          method: 'POST',
          path: `/api/v2/chat/${c.appointment}/messages`,
          headers: { ...json, authorization: `Bearer ${c.patientToken}` },
          setupRequest: (req) => ({ ...req, body: JSON.stringify({ message: BODY, message_type: 'text', temp_id: id() }) }),
        };
    }
  };
  return measure(server, kind === 'minimal' ? ports.minimal : ports.api, convs, requestFor, { connections: CONNECTIONS, seconds });
}

// ---- WebSocket delivery ---------------------------------------------------------------------

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function openSocket(
  port: number,
  token: string,
  context: string,
  onMessage: (data: { type: string; data?: { client_message_id?: string } }) => void,
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v2/ws`, ['bearer', token]);
    ws.once('error', reject);
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString()) as { type: string; ref?: string; data?: { client_message_id?: string } };
      if (f.type === 'ready') ws.send(JSON.stringify({ type: 'subscribe', session_context: context, ref: 'sub' }));
      else if (f.type === 'subscribed') resolve(ws);
      else if (f.type === 'error' && f.ref === 'sub') reject(new Error(JSON.stringify(f)));
      else onMessage(f);
    });
  });
}

async function websocketDelivery(port: number, convs: Conversation[]) {
  const pending = new Map<string, { t0: number }>();
  const latencies: number[] = [];
  let echoes = 0;
  const senders = new Map<string, 'patient' | 'doctor'>();
  const receiver = (who: 'patient' | 'doctor') => (f: { type: string; data?: { client_message_id?: string } }) => {
    if (f.type !== 'message.created' || !f.data?.client_message_id) return;
    const id = f.data.client_message_id;
    if (senders.get(id) === who) {
      echoes++; // the sender's own socket gets its message too (other devices stay in sync)
      return;
    }
    const p = pending.get(id);
    if (!p) return;
    latencies.push(performance.now() - p.t0);
    pending.delete(id);
  };
  const sockets: WebSocket[] = [];
  const started = performance.now();
  for (let i = 0; i < convs.length; i += 100) {
    const batch = convs.slice(i, i + 100);
    const opened = await Promise.all(
      batch.flatMap((c) => [
        openSocket(port, c.patientToken, `text_session:${c.session}`, receiver('patient')),
        openSocket(port, c.doctorToken, `text_session:${c.session}`, receiver('doctor')),
      ]),
    );
    sockets.push(...opened);
  }
  const connectSeconds = (performance.now() - started) / 1000;
  log(`(c) ${sockets.length} sockets connected and subscribed in ${connectSeconds.toFixed(1)} s; sending ${WS_RATE}/s for ${WS_SECONDS} s`);

  let sent = 0;
  let failed = 0;
  let inFlight = 0;
  const sendOne = async (c: Conversation, fromDoctor: boolean) => {
    const id = `ws${process.pid}-${++seq}`;
    senders.set(id, fromDoctor ? 'doctor' : 'patient');
    pending.set(id, { t0: performance.now() });
    inFlight++;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/v2/sessions/text_session:${c.session}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${fromDoctor ? c.doctorToken : c.patientToken}` },
        body: JSON.stringify({ client_message_id: id, type: 'text', body: BODY }),
      });
      if (res.status !== 201) failed++;
      await res.arrayBuffer();
    } catch {
      failed++;
    } finally {
      inFlight--;
    }
  };
  const tickMs = 10;
  const perTick = WS_RATE / (1000 / tickMs);
  let credit = 0;
  const end = performance.now() + WS_SECONDS * 1000;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (performance.now() >= end) {
        clearInterval(timer);
        resolve();
        return;
      }
      credit += perTick;
      while (credit >= 1) {
        credit -= 1;
        const c = convs[Math.floor(Math.random() * convs.length)]!;
        sent++;
        void sendOne(c, Math.random() < 0.5);
      }
    }, tickMs);
  });
  const drainUntil = performance.now() + 5_000;
  while ((inFlight > 0 || pending.size > 0) && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  for (const ws of sockets) ws.terminate();
  latencies.sort((a, b) => a - b);
  return {
    sessions: convs.length,
    sockets: sockets.length,
    connect_seconds: round(connectSeconds),
    rate_per_s: WS_RATE,
    seconds: WS_SECONDS,
    sent,
    failed_sends: failed,
    delivered_to_other: latencies.length,
    echoes_to_sender: echoes,
    lost: pending.size,
    p50_ms: round(percentile(latencies, 50), 2),
    p99_ms: round(percentile(latencies, 99), 2),
    max_ms: round(latencies.at(-1) ?? NaN, 2),
  };
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
  const scratch = await createScratchDatabase(ADMIN_URL, 'sg_bench_chat');
  const databaseUrl = scratch.url;
  let stopServer = async () => {};
  try {
    const database = await openDatabase({ databaseUrl, dataDir: '' });
    await migrate(database.db);
    await database.close();

    const http = await conversations(databaseUrl, CONNECTIONS, 'h');
    const ws = await conversations(databaseUrl, WS_SESSIONS, 'w');
    log(`data: ${http.length} + ${ws.length} active sessions`);

    const forked = await startServer(databaseUrl);
    stopServer = forked.stop;
    const ports = forked.ports;
    server = forked.child;

    // BENCH_CASES=session,legacy (a subset) or none (only the WebSocket case).
    const cases = ((process.env['BENCH_CASES']?.split(',') ?? ['minimal', 'session', 'legacy']) as Case[]).filter((c) =>
      ['minimal', 'session', 'legacy'].includes(c),
    );
    for (const k of cases) {
      log(`warm-up ${k} (${WARMUP} s)`);
      await load(k, ports, http, WARMUP);
    }
    const samples: Record<Case, Sample[]> = { minimal: [], session: [], legacy: [] };
    // BENCH_PROFILE=<dir>: a CPU profile of the API process over the measured rounds (hot spots).
    await forked.profile(true);
    // The ratios are taken within each round and their median reported. The session route — the
    // reference of both (a) and (b) — runs in the middle of every round, next to each case it is
    // compared with, and the order of the outer two alternates (minimal, session, legacy; then
    // legacy, session, minimal) so that the drift of a long run (tables growing, WAL) falls on
    // neither side. Before every window the database is brought to the same state — the rows
    // of the last window vacuumed and analysed, a checkpoint taken — so that autovacuum and
    // checkpoints, which on two cores take one core from the load, land between windows rather
    // than inside one of them.
    for (let r = 1; r <= ROUNDS; r++) {
      for (const k of r % 2 === 1 ? cases : [...cases].reverse()) {
        await settle(databaseUrl);
        const s = await load(k, ports, http, DURATION);
        samples[k].push(s);
        const dbCpu = s.dbCpuUs === null ? '' : `, PostgreSQL CPU ${Math.round(s.dbCpuUs)} µs/request`;
        log(
          `round ${r} ${k}: ${Math.round(s.rps)} req/s, p50 ${s.p50} ms, p99 ${s.p99} ms, errors ${s.errors}, API CPU ${Math.round(s.cpuUs)} µs/request${dbCpu}`,
        );
      }
    }
    await forked.profile(false);
    const agg = (k: Case) => ({
      rps: Math.round(mean(samples[k].map((s) => s.rps))),
      p50_ms: round(mean(samples[k].map((s) => s.p50))),
      p99_ms: round(mean(samples[k].map((s) => s.p99))),
      errors: samples[k].reduce((a, s) => a + s.errors, 0),
      api_cpu_us_per_request: Math.round(mean(samples[k].map((s) => s.cpuUs))),
      postgres_cpu_us_per_request: samples[k].some((s) => s.dbCpuUs === null) ? null : Math.round(mean(samples[k].map((s) => s.dbCpuUs!))),
    });
    const totalCpu = (s: Sample) => s.cpuUs + (s.dbCpuUs ?? 0);
    const minimal = agg('minimal');
    const session = agg('session');
    const legacy = agg('legacy');
    /** The median over the rounds of `f(round's a, round's b)`. */
    const perRound = (a: Case, b: Case, f: (x: Sample, y: Sample) => number) =>
      round(median(samples[a].map((x, i) => f(x, samples[b][i]!))), 3);

    // Let the database settle after the HTTP cases (their WAL and autovacuum) so (c) starts from
    // a state like (a)'s.
    await settle(databaseUrl);
    await new Promise((r) => setTimeout(r, 3_000));
    log(`(c) WebSocket delivery: ${WS_SESSIONS} sessions × 2 participants`);
    const delivery = await websocketDelivery(ports.api, ws);

    const result = {
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
      settings: {
        duration_s: DURATION,
        rounds: ROUNDS,
        connections: CONNECTIONS,
        db_pool_size: Number(POOL_SIZE),
        log_buffer_bytes: LOG_BUFFER_BYTES,
        bus: process.env['BENCH_INPROCESS_BUS'] ? 'in-process' : 'postgres',
      },
      a_send_vs_minimal: {
        minimal,
        session,
        throughput_ratio: perRound('session', 'minimal', (x, y) => x.rps / y.rps),
        p99_ratio: perRound('session', 'minimal', (x, y) => x.p99 / y.p99),
        target: 'throughput ratio ≥ 0.60, p99 ratio ≤ 1.5',
      },
      b_legacy_guard_overhead: {
        session,
        legacy,
        throughput_overhead_pct: perRound('legacy', 'session', (x, y) => (1 - x.rps / y.rps) * 100),
        cpu_overhead_pct: perRound('legacy', 'session', (x, y) => (x.cpuUs / y.cpuUs - 1) * 100),
        /** API + PostgreSQL CPU per request: what the guard costs the machine, whatever the noise of a window. */
        total_cpu_overhead_pct: perRound('legacy', 'session', (x, y) => (totalCpu(x) / totalCpu(y) - 1) * 100),
        p99_ratio: perRound('legacy', 'session', (x, y) => x.p99 / y.p99),
        target: 'overhead ≤ 5 %',
      },
      c_websocket_delivery: { ...delivery, target: 'p99 ≤ 50 ms' },
    };
    console.log(JSON.stringify(result, null, 2));
    const a = result.a_send_vs_minimal;
    const b = result.b_legacy_guard_overhead;
    console.log('\n| case | req/s | p50 | p99 | API CPU / request | PostgreSQL CPU / request | errors | ratio | target |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    const row = (name: string, x: ReturnType<typeof agg>, ratio: string, target: string) =>
      console.log(
        `| ${name} | ${x.rps} | ${x.p50_ms} ms | ${x.p99_ms} ms | ${x.api_cpu_us_per_request} µs | ${x.postgres_cpu_us_per_request ?? '–'} µs | ${x.errors} | ${ratio} | ${target} |`,
      );
    row('minimal INSERT route', minimal, '1.00', '');
    row('(a) session send', session, `${a.throughput_ratio} of minimal; p99 ×${a.p99_ratio}`, '≥ 0.60; p99 ≤ ×1.5');
    row(
      '(b) legacy guarded send',
      legacy,
      `${b.throughput_overhead_pct} % overhead vs session (CPU: API ${b.cpu_overhead_pct} %, API + PostgreSQL ${b.total_cpu_overhead_pct} %); p99 ×${b.p99_ratio}`,
      '≤ 5 %',
    );
    console.log(
      `| (c) WebSocket delivery (${delivery.sockets} sockets, ${delivery.rate_per_s} msg/s) | | ${delivery.p50_ms} ms | ${delivery.p99_ms} ms | | | ${delivery.failed_sends + delivery.lost} | max ${delivery.max_ms} ms | p99 ≤ 50 ms |`,
    );
  } finally {
    await stopServer();
    await scratch.drop();
  }
}

await main();
