/**
 * Rate limits per identity on every write, with `@fastify/rate-limit`:
 *
 * - The key is the verified user id (`u:<id>`; the limiter runs as a preHandler, after
 *   authentication), or the client address (`ip:<addr>`) for anonymous calls — never the raw
 *   Authorization header, so `bearer`/`BEARER`/extra spaces or a second token of the same user
 *   share one bucket.
 * - Every route that is not a GET/HEAD/OPTIONS gets the general write limit
 *   (`RATE_LIMIT_WRITE_PER_MINUTE`, group `write`) unless it declares its own: chat sends (group
 *   `chat`: `RATE_LIMIT_CHAT_BURST` per `RATE_LIMIT_CHAT_WINDOW_SECONDS`, session and legacy
 *   sends together), creations (`RATE_LIMIT_CREATE_PER_MINUTE`), WebSocket handshakes.
 * - Over the limit: 429 `RATE_LIMITED` with `Retry-After` (src/plugins/errors.ts).
 * - Counters: with PostgreSQL in the `rate_limit_hits` table, so a limit holds across API
 *   processes (one upsert per event-loop turn's limited requests; see docs/decisions.md "Abuse"); on PGlite — one
 *   process owns the database — in memory, which is exact there.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import { sql } from 'kysely';
import { batchedStatement } from '../db/batch.js';
import type { Db } from '../db/types.js';

type IncrCallback = (err: Error | null, res: { current: number; ttl: number }) => void;

/** Where counters live; `hit` counts one request in the window of `key` and answers the count. */
export interface HitCounter {
  hit(key: string, windowMs: number): Promise<{ current: number; ttl: number }>;
  prune(): Promise<void>;
}

/** Counters in this process: exact when one process serves the database (PGlite). */
export class MemoryCounter implements HitCounter {
  private readonly hits = new Map<string, { current: number; resetAt: number }>();
  async hit(key: string, windowMs: number) {
    const now = Date.now();
    let h = this.hits.get(key);
    if (!h || h.resetAt <= now) this.hits.set(key, (h = { current: 0, resetAt: now + windowMs }));
    h.current += 1;
    return { current: h.current, ttl: h.resetAt - now };
  }
  async prune() {
    const now = Date.now();
    for (const [k, h] of this.hits) if (h.resetAt <= now) this.hits.delete(k);
  }
}

/**
 * Counters in PostgreSQL, shared by every API process: one fixed window per key, decided by the
 * database clock. The hits of one event-loop turn are counted by one statement (src/db/batch.ts):
 * k hits of a key add k, and its callers get the k counts that ends with, in their order — the
 * same counts k statements would have given.
 */
export class PgCounter implements HitCounter {
  private readonly hits = batchedStatement<{ key: string; windowMs: number }, { current: number; ttl: number }>(async (asked) => {
    const perKey = new Map<string, { n: number; windowMs: number }>();
    for (const a of asked) {
      const k = perKey.get(a.key);
      if (k) k.n += 1;
      else perKey.set(a.key, { n: 1, windowMs: a.windowMs });
    }
    // Keys in a fixed order, so two concurrent batches lock their rows in the same order.
    const keys = [...perKey.keys()].sort();
    const { rows } = await sql<{ key: string; hits: number; ttl_ms: number }>`
      insert into rate_limit_hits as h (key, hits, expires_at)
      select t.key, t.n, now() + make_interval(secs => t.window_s)
        from unnest(${keys}::text[], ${keys.map((k) => perKey.get(k)!.n)}::int[], ${keys.map((k) => perKey.get(k)!.windowMs / 1000)}::float8[])
             as t(key, n, window_s)
       order by t.key
      on conflict (key) do update set
        hits = case when h.expires_at <= now() then excluded.hits else h.hits + excluded.hits end,
        expires_at = case when h.expires_at <= now() then excluded.expires_at else h.expires_at end
      returning key, hits, greatest(0, extract(epoch from (expires_at - now())) * 1000)::float8 as ttl_ms`.execute(this.db);
    const after = new Map(rows.map((r) => [r.key, { hits: Number(r.hits), ttl: Math.ceil(Number(r.ttl_ms)) }]));
    // The i-th of k hits of a key in this batch is count (total - k + i).
    const seen = new Map<string, number>();
    return asked.map((a) => {
      const r = after.get(a.key)!;
      const i = (seen.get(a.key) ?? 0) + 1;
      seen.set(a.key, i);
      return { current: r.hits - perKey.get(a.key)!.n + i, ttl: r.ttl };
    });
  });

  constructor(private readonly db: Db) {}
  hit(key: string, windowMs: number) {
    return this.hits.load({ key, windowMs });
  }
  async prune() {
    await this.db
      .deleteFrom('rate_limit_hits')
      .where('expires_at', '<', sql<Date>`now()`)
      .execute();
  }
}

/** The store class `@fastify/rate-limit` instantiates; one per route (`child`), namespaced by route or group. */
function storeFor(counter: HitCounter) {
  return class CounterStore {
    constructor(private readonly namespace = '') {}
    incr(key: string, cb: IncrCallback, timeWindow: number) {
      counter.hit(`${this.namespace}${key}`, timeWindow).then(
        (r) => cb(null, r),
        (err: Error) => cb(err, { current: 0, ttl: 0 }),
      );
    }
    child(routeOptions: { groupId?: string; routeInfo?: { method?: string | string[]; url?: string } }) {
      // A group's key already carries the group id (the plugin appends it); other routes count alone.
      if (routeOptions.groupId) return new CounterStore('');
      const method = routeOptions.routeInfo?.method;
      return new CounterStore(`${Array.isArray(method) ? method.join(',') : (method ?? '')} ${routeOptions.routeInfo?.url ?? ''}|`);
    }
  };
}

/** The identity a limit counts against: the verified user, else the client address. */
export function rateLimitKey(req: FastifyRequest): string {
  const id = req.user?.id;
  return id != null ? `u:${id}` : `ip:${req.ip}`;
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

export default fp(
  async function rateLimits(app: FastifyInstance) {
    const { config, database } = app.ctx;
    const counter: HitCounter = database.kind === 'postgres' ? new PgCounter(app.ctx.db) : new MemoryCounter();
    // Every write is limited: routes without their own limit get the general one.
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      if (methods.every((m) => READS.has(m))) return;
      const cfg = (route.config ?? {}) as { rateLimit?: unknown };
      if (cfg.rateLimit !== undefined) return;
      route.config = {
        ...cfg,
        rateLimit: { max: config.rateLimitWritePerMinute, timeWindow: 60_000, groupId: 'write' },
      } as typeof route.config;
    });
    await app.register(rateLimit, {
      global: false,
      hook: 'preHandler',
      keyGenerator: rateLimitKey,
      store: storeFor(counter) as never,
    });
    const prune = setInterval(() => {
      counter.prune().catch((err: unknown) => app.log.warn({ err }, 'rate limit prune failed'));
    }, 60_000);
    prune.unref();
    app.addHook('onClose', async () => clearInterval(prune));
  },
  { name: 'rate-limits', dependencies: ['context'] },
);

/** The chat send limit (session and legacy sends share it), for a route's `config.rateLimit`. */
export const chatSendLimit = (app: FastifyInstance) => ({
  max: app.ctx.config.rateLimitChatBurst,
  timeWindow: app.ctx.config.rateLimitChatWindowSeconds * 1000,
  groupId: 'chat',
});
