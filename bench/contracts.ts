/**
 * The original client contract's cost, measured side by side in one run on PostgreSQL: the mobile
 * app's busiest calls through `/api` (the translation layer in src/compat/original) beside the same
 * calls on sessiongate's own `/api/v2`, against one API process built as `sessiongate serve` builds it.
 *
 *   poll  `GET /api/appointments/{id}/session`             vs `GET /api/v2/appointments/{id}/session`
 *   send  `POST /api/chat/text_session_{id}/messages`       vs `POST /api/v2/sessions/text_session:{id}/messages`
 *         (the app's body: message, message_type, temp_id)     (client_message_id, type, body)
 *   page  `GET /api/chat/text_session_{id}/messages`        vs `GET /api/v2/sessions/text_session:{id}/messages`
 *         (the whole conversation, as the app reads it)        (the same 20 messages, limit=20)
 *
 * Each pair runs back to back in every round, the order alternating between rounds; every window
 * starts from a vacuumed, checkpointed database; the ratios are the medians of the per-round
 * ratios. The page case reads its own conversations (20 messages each) so the sends of the send
 * case do not change what a page holds. Target: the original contract costs ≤ 10 % throughput and
 * ≤ 1.2× p99.
 *
 *   npm run bench:contracts   (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres;
 *                              creates and drops its own database)
 *   DURATION=6 ROUNDS=6 CONNECTIONS=50 npm run bench:contracts
 *   BENCH_CALLS=send,page BENCH_PROFILE=/tmp/prof npm run bench:contracts   (a CPU profile of the API)
 *
 * Not a test: prints JSON and a table.
 */
import { cpus } from 'node:os';
import type autocannon from 'autocannon';
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
} from './http-harness.js';
import { createScratchDatabase } from './scratch-database.js';

const ADMIN_URL = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DURATION = Number(process.env['DURATION'] ?? 6);
const WARMUP = Number(process.env['WARMUP'] ?? 3);
const ROUNDS = Number(process.env['ROUNDS'] ?? 6);
const CONNECTIONS = Number(process.env['CONNECTIONS'] ?? 50);
const PAGE = 20;

type Call = 'poll' | 'send' | 'page';
type Door = 'v2' | 'original';
// BENCH_CALLS=send,page (a subset).
const CALLS = (process.env['BENCH_CALLS']?.split(',') ?? ['poll', 'send', 'page']).filter((c): c is Call =>
  ['poll', 'send', 'page'].includes(c),
);

let seq = 0;
function requestFor(call: Call, door: Door) {
  const json = { 'content-type': 'application/json' };
  const id = () => `c${process.pid}-${++seq}`;
  return (c: Conversation): autocannon.Request => {
    const auth = { authorization: `Bearer ${c.patientToken}` };
    switch (call) {
      case 'poll':
        return {
          method: 'GET',
          path: door === 'v2' ? `/api/v2/appointments/${c.appointment}/session` : `/api/appointments/${c.appointment}/session`,
          headers: auth,
        };
      case 'page':
        return {
          method: 'GET',
          path:
            door === 'v2'
              ? `/api/v2/sessions/text_session:${c.session}/messages?limit=${PAGE}`
              : `/api/chat/text_session_${c.session}/messages`,
          headers: auth,
        };
      case 'send':
        return door === 'v2'
          ? {
              method: 'POST',
              path: `/api/v2/sessions/text_session:${c.session}/messages`,
              headers: { ...json, ...auth },
              setupRequest: (req) => ({ ...req, body: JSON.stringify({ client_message_id: id(), type: 'text', body: BODY }) }),
            }
          : {
              method: 'POST',
              path: `/api/chat/text_session_${c.session}/messages`,
              headers: { ...json, ...auth },
              setupRequest: (req) => ({ ...req, body: JSON.stringify({ message: BODY, message_type: 'text', temp_id: `msg_${id()}` }) }),
            };
    }
  };
}

async function main() {
  const scratch = await createScratchDatabase(ADMIN_URL, 'sg_bench_contracts');
  let stopServer = async () => {};
  try {
    const database = await openDatabase({ databaseUrl: scratch.url, dataDir: '' });
    await migrate(database.db);
    await database.close();
    const talking = await conversations(scratch.url, CONNECTIONS, 's');
    const reading = await conversations(scratch.url, CONNECTIONS, 'r', PAGE);
    const convsOf = (call: Call) => (call === 'page' ? reading : talking);

    const server = await startServer(scratch.url);
    stopServer = server.stop;
    const window = (call: Call, door: Door, seconds: number) =>
      measure(server.child, server.ports.api, convsOf(call), requestFor(call, door), { connections: CONNECTIONS, seconds });

    for (const call of CALLS) {
      for (const door of ['v2', 'original'] as Door[]) {
        log(`warm-up ${call} ${door} (${WARMUP} s)`);
        const s = await window(call, door, WARMUP);
        if (s.errors > 0) throw new Error(`${call} through ${door} answered ${s.errors} errors: is the route there?`);
      }
    }
    const samples: Record<`${Call}:${Door}`, Sample[]> = {
      'poll:v2': [],
      'poll:original': [],
      'send:v2': [],
      'send:original': [],
      'page:v2': [],
      'page:original': [],
    };
    await server.profile(true);
    for (let r = 1; r <= ROUNDS; r++) {
      for (const call of CALLS) {
        const doors: Door[] = r % 2 === 1 ? ['v2', 'original'] : ['original', 'v2'];
        for (const door of doors) {
          await settle(scratch.url);
          const s = await window(call, door, DURATION);
          samples[`${call}:${door}`].push(s);
          log(
            `round ${r} ${call} ${door}: ${Math.round(s.rps)} req/s, p50 ${s.p50} ms, p99 ${s.p99} ms, errors ${s.errors}, API CPU ${Math.round(s.cpuUs)} µs/request`,
          );
        }
      }
    }
    await server.profile(false);

    const agg = (xs: Sample[]) => ({
      rps: Math.round(mean(xs.map((s) => s.rps))),
      p50_ms: round(mean(xs.map((s) => s.p50))),
      p99_ms: round(mean(xs.map((s) => s.p99))),
      errors: xs.reduce((a, s) => a + s.errors, 0),
      api_cpu_us_per_request: Math.round(mean(xs.map((s) => s.cpuUs))),
    });
    const perRound = (call: Call, f: (o: Sample, v: Sample) => number) =>
      round(median(samples[`${call}:original`].map((o, i) => f(o, samples[`${call}:v2`][i]!))), 3);
    const results = Object.fromEntries(
      CALLS.map((call) => [
        call,
        {
          v2: agg(samples[`${call}:v2`]),
          original: agg(samples[`${call}:original`]),
          throughput_cost_pct: perRound(call, (o, v) => (1 - o.rps / v.rps) * 100),
          p99_ratio: perRound(call, (o, v) => o.p99 / v.p99),
        },
      ]),
    ) as Record<Call, { v2: ReturnType<typeof agg>; original: ReturnType<typeof agg>; throughput_cost_pct: number; p99_ratio: number }>;
    console.log(
      JSON.stringify(
        {
          machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
          settings: { duration_s: DURATION, rounds: ROUNDS, connections: CONNECTIONS, page: PAGE },
          results,
          target: 'original contract: throughput cost ≤ 10 %, p99 ≤ 1.2×',
        },
        null,
        2,
      ),
    );
    console.log('\n| call | /api/v2 req/s | /api req/s | /api/v2 p99 | /api p99 | throughput cost | p99 ratio | target |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const call of CALLS) {
      const x = results[call];
      console.log(
        `| ${call} | ${x.v2.rps} | ${x.original.rps} | ${x.v2.p99_ms} ms | ${x.original.p99_ms} ms | ${x.throughput_cost_pct} % | ×${x.p99_ratio} | ≤ 10 %; ≤ ×1.2 |`,
      );
    }
  } finally {
    await stopServer();
    await scratch.drop();
  }
}

await main();
