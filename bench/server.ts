/**
 * The server process of the HTTP benchmarks (`bench:chat`, `bench:contracts`), forked by
 * `startServer` in http-harness.ts: the real API, built exactly as `sessiongate serve` builds it
 * (`createContext` + `buildApp`, the PostgreSQL LISTEN/NOTIFY bus, the production logger at
 * LOG_LEVEL=warn with stdout to /dev/null), and beside it the minimal route the chat send is
 * compared with — a bare Fastify route running one `INSERT … RETURNING` of the same message row on
 * its own pool of the same size. Each listens on its own loopback port.
 *
 * Messages from the parent: `cpu` (answered with `process.cpuUsage()`), `profile-start` /
 * `profile-stop` (a CPU profile written to BENCH_PROFILE), `stop`.
 *
 * Environment: DB_POOL_SIZE (10), LOG_BUFFER_BYTES, BENCH_INPROCESS_BUS=1 (no NOTIFY).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import Fastify from 'fastify';
import pg from 'pg';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/env.js';
import { FlagService } from '../src/config/flags.js';
import { createContext } from '../src/context.js';
import { createBusFor } from '../src/realtime/create-bus.js';
import { NO_USER_LIMITS, SECRET, type ServerPorts } from './http-harness.js';

const databaseUrl = process.argv[2]!;
const poolSize = process.env['DB_POOL_SIZE'] ?? '10';
const config = loadConfig({
  DATABASE_URL: databaseUrl,
  JWT_SECRET: SECRET,
  DB_POOL_SIZE: poolSize,
  LOG_LEVEL: 'warn',
  LOG_BUFFER_BYTES: process.env['LOG_BUFFER_BYTES'],
  ...NO_USER_LIMITS,
});
const ctx = await createContext(config, {
  role: 'bench',
  flags: new FlagService(() => ({})),
  migrate: false,
  bus: process.env['BENCH_INPROCESS_BUS'] ? async () => new (await import('../src/realtime/bus.js')).InProcessBus() : createBusFor,
});
const app = await buildApp(ctx);
await app.listen({ port: 0, host: '127.0.0.1' });

const pool = new pg.Pool({ connectionString: databaseUrl, max: Number(poolSize) });
const minimal = Fastify();
minimal.post('/minimal/:session', async (req, reply) => {
  const b = req.body as { sender_id: number; client_message_id: string; type: string; body: string };
  const r = await pool.query(
    `insert into messages (session_id, sender_id, client_message_id, type, body) values ($1, $2, $3, $4, $5)
     returning id, session_id, sender_id, client_message_id, type, body, created_at`,
    [Number((req.params as { session: string }).session), b.sender_id, b.client_message_id, b.type, b.body],
  );
  return reply.code(201).send({ success: true, data: r.rows[0] });
});
await minimal.listen({ port: 0, host: '127.0.0.1' });

const port = (f: { server: { address(): unknown } }) => (f.server.address() as { port: number }).port;
process.send!({ api: port(app), minimal: port(minimal) } satisfies ServerPorts);

const profiler = new Session();
process.on('message', (m) => {
  if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
  if (m === 'stop') void Promise.all([app.close(), minimal.close(), pool.end()]).finally(() => process.exit(0));
  if (m === 'profile-start') {
    profiler.connect();
    profiler.post('Profiler.enable', () => profiler.post('Profiler.start'));
  }
  if (m === 'profile-stop') {
    profiler.post('Profiler.stop', (err, r) => {
      if (!err) writeFileSync(join(process.env['BENCH_PROFILE']!, `api-${Date.now()}.cpuprofile`), JSON.stringify(r.profile));
      profiler.disconnect();
      process.send!({ profiled: true });
    });
  }
});
