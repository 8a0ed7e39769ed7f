/**
 * The cross-process event bus on PostgreSQL: what any API or worker process publishes reaches
 * the subscribers of every process sharing the database.
 *
 * - Local subscribers get an event at once (next microtask).
 * - For other processes the events are rows of `realtime_events` (an unlogged table: nothing in
 *   it outlives a crash, which the resync below covers anyway), and ONE statement inserts them
 *   and NOTIFYs `<origin> <first id> <last id>` — a few bytes, whatever the events' size. A
 *   listener reads the rows that notification names (its own origin it skips: those were
 *   delivered locally). NOTIFY is delivered after the commit, so the rows are there to read.
 * - Publishing batches: all events published within 10 ms leave in one statement, in order,
 *   outside the publisher's transaction. (NOTIFY inside a write transaction would hold
 *   PostgreSQL's global notify lock through that transaction's commit and WAL flush, serialising
 *   every message commit of the cluster.)
 * - `publishInTransaction` (the notification outbox) runs the same statement inside the caller's
 *   transaction: other processes see the events at commit and only if it commits, so the outbox
 *   row marked delivered in that transaction was published.
 * - Listening uses one dedicated connection taken from the pool, which also reads the rows (in
 *   notification order). If it breaks (server restart, `pg_terminate_backend`), it is replaced
 *   with backoff (100 ms → 5 s); whatever was published meanwhile did not reach this process, so
 *   once the listener is back the bus hands its own subscribers a `resync` event (`broadcast`:
 *   the gateway sends it to every connection) and clients re-read from the database.
 * - A half-open LISTEN connection (peer gone without a FIN) never errors by itself: the pool's
 *   connections use TCP keepalive, and every SELF_CHECK_MS the listener runs `select 1` with a
 *   timeout; no answer in time counts as a lost connection (detected within ~30 s).
 * - Rows are deleted once they are a minute old (PRUNE_MS): by then every listener has read them.
 */
import { randomBytes } from 'node:crypto';
import { CompiledQuery } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Executor } from '../db/types.js';
import { RESYNC_EVENT, type BusEvent, type BusHandler, type EventBus } from './bus.js';

export const CHANNEL = 'sessiongate_events';
/**
 * Events published within this window leave in one statement. Under load that turns one
 * statement per message into one per many messages, for at most 10 ms more cross-process latency
 * (local subscribers are not delayed at all).
 */
const FLUSH_WINDOW_MS = 10;
/** Events per statement: bounds one statement's parameter size under a burst. */
const MAX_EVENTS_PER_STATEMENT = 2_000;
/** How often the LISTEN connection proves it is alive, and how long it has to answer. */
const SELF_CHECK_MS = 15_000;
const SELF_CHECK_TIMEOUT_MS = 10_000;
/** Rows older than one interval (at least) are deleted at the next. */
const PRUNE_MS = 60_000;

/**
 * Inserts the events (a JSON array of event texts, in order) and notifies their id range; run on
 * a pooled connection (publish) or inside a transaction (publishInTransaction).
 */
const WRITE_SQL = `
  with ev as (
    insert into realtime_events (origin, body)
    select $1::text, e.body from json_array_elements_text($2::json) with ordinality as e(body, n) order by e.n
    returning id)
  select pg_notify($3::text, $1::text || ' ' || min(id) || ' ' || max(id)) from ev`;
const READ_SQL = 'select body from realtime_events where id between $1 and $2 and origin = $3 order by id';

export class PgBus implements EventBus {
  private readonly handlers = new Set<BusHandler>();
  private readonly origin = randomBytes(6).toString('hex');
  /** Events waiting for the next flush, and the promise their publishers wait on. */
  private pending: string[] = [];
  private pendingDone: { promise: Promise<void>; resolve: () => void } | null = null;
  private flushing: Promise<void> | null = null;
  private flushScheduled = false;
  private listener: pg.PoolClient | null = null;
  /** Reads of notified rows, chained so events reach subscribers in notification order. */
  private reading: Promise<void> = Promise.resolve();
  private reconnectTimer: NodeJS.Timeout | null = null;
  private attempts = 0;
  private closed = false;
  /** When the LISTEN connection was lost (null while listening): the resync says since when. */
  private lostAt: Date | null = null;
  private timers: NodeJS.Timeout[] = [];
  /** The highest id seen at the previous prune: everything up to it is at least PRUNE_MS old. */
  private pruneMark: string | null = null;
  /** How many times the listener came back (tests, logs). */
  reconnects = 0;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly selfCheck: { everyMs: number; timeoutMs: number },
  ) {}

  /** Connects the listener (the first connection must succeed) and returns the bus. */
  static async start(pool: pg.Pool, log: Logger, opts: { selfCheckMs?: number; selfCheckTimeoutMs?: number } = {}): Promise<PgBus> {
    const bus = new PgBus(pool, log, {
      everyMs: opts.selfCheckMs ?? SELF_CHECK_MS,
      timeoutMs: opts.selfCheckTimeoutMs ?? SELF_CHECK_TIMEOUT_MS,
    });
    await bus.listen();
    bus.timers = [setInterval(() => void bus.checkListener(), bus.selfCheck.everyMs), setInterval(() => void bus.prune(), PRUNE_MS)];
    for (const t of bus.timers) t.unref();
    return bus;
  }

  /** Whether the LISTEN connection is up (tests, health). */
  get listening(): boolean {
    return this.listener !== null;
  }

  /** The PostgreSQL backend pid of the LISTEN connection (pg_stat_activity.pid), null while down. */
  get listenerPid(): number | null {
    return (this.listener as { processID?: number } | null)?.processID ?? null;
  }

  async publish(event: BusEvent): Promise<void> {
    this.deliver(event);
    if (this.closed) return;
    this.pending.push(JSON.stringify(event));
    if (!this.pendingDone) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.pendingDone = { promise, resolve };
    }
    const done = this.pendingDone.promise;
    this.scheduleFlush();
    await done;
  }

  async publishInTransaction(trx: Executor, events: BusEvent[]): Promise<() => void> {
    for (let i = 0; i < events.length; i += MAX_EVENTS_PER_STATEMENT) {
      const batch = JSON.stringify(events.slice(i, i + MAX_EVENTS_PER_STATEMENT).map((e) => JSON.stringify(e)));
      await trx.executeQuery(CompiledQuery.raw(WRITE_SQL, [this.origin, batch, CHANNEL]));
    }
    return () => {
      for (const e of events) this.deliver(e);
    };
  }

  subscribe(handler: BusHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const t of this.timers) clearInterval(t);
    await this.flushNow();
    const l = this.listener;
    this.listener = null;
    if (l) {
      await l.query(`unlisten ${CHANNEL}`).catch(() => {});
      l.release();
    }
    this.handlers.clear();
  }

  private deliver(event: BusEvent): void {
    queueMicrotask(() => this.handOut(event));
  }

  private handOut(event: BusEvent): void {
    for (const h of this.handlers) {
      try {
        h(event);
      } catch {
        /* a subscriber's failure is its own */
      }
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setTimeout(() => {
      this.flushScheduled = false;
      void this.flushNow();
    }, FLUSH_WINDOW_MS);
  }

  /** Writes everything pending; one statement per batch, batches in order. */
  private async flushNow(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    const done = this.pendingDone;
    this.pending = [];
    this.pendingDone = null;
    this.flushing = (async () => {
      try {
        for (let i = 0; i < batch.length; i += MAX_EVENTS_PER_STATEMENT) {
          const values = [this.origin, JSON.stringify(batch.slice(i, i + MAX_EVENTS_PER_STATEMENT)), CHANNEL];
          await this.pool.query({ name: 'sessiongate_bus_write', text: WRITE_SQL, values });
        }
      } catch (err) {
        // Best effort: the events are already committed facts in the database; subscribers on
        // other processes miss the live notification and catch up on their next read.
        this.log.warn({ err, events: batch.length }, 'event bus: publishing failed; events not delivered to other processes');
      } finally {
        done?.resolve();
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
    if (this.pending.length > 0) this.scheduleFlush();
  }

  private async listen(): Promise<void> {
    const client = await this.pool.connect();
    const onLost = (err?: Error) => this.lost(client, err);
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (msg) => {
      if (msg.channel === CHANNEL && msg.payload !== undefined) this.onNotification(client, msg.payload);
    });
    try {
      await client.query(`listen ${CHANNEL}`);
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
    if (this.closed) {
      client.release();
      return;
    }
    this.listener = client;
    this.attempts = 0;
    if (this.lostAt) {
      // Whatever other processes published in between did not reach this process.
      const since = this.lostAt;
      this.lostAt = null;
      this.reconnects += 1;
      this.deliver({ type: RESYNC_EVENT, broadcast: true, payload: { reason: 'event_bus_reconnected', since: since.toISOString() } });
    }
  }

  /** Reads the rows a notification of another process names and hands them out, in order. */
  private onNotification(client: pg.PoolClient, payload: string): void {
    const [origin, first, last] = payload.split(' ');
    if (origin === this.origin || !origin || !/^\d+$/.test(first ?? '') || !/^\d+$/.test(last ?? '')) return;
    this.reading = this.reading.then(async () => {
      if (this.listener !== client) return; // lost meanwhile: the resync covers it
      try {
        const r = await client.query<{ body: string }>({ name: 'sessiongate_bus_read', text: READ_SQL, values: [first, last, origin] });
        for (const row of r.rows) {
          const event = JSON.parse(row.body) as BusEvent;
          if (typeof event?.type === 'string') this.handOut(event);
        }
      } catch (err) {
        this.log.warn({ err }, 'event bus: reading notified events failed');
      }
    });
  }

  /** The periodic self-check: a listener that cannot answer `select 1` in time is treated as lost. */
  private async checkListener(): Promise<void> {
    const client = this.listener;
    if (!client || this.closed) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.query('select 1'),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`LISTEN connection did not answer within ${this.selfCheck.timeoutMs} ms`)),
            this.selfCheck.timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.lost(client, err as Error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Deletes the rows seen at the previous prune (read by every listener long since). */
  private async prune(): Promise<void> {
    try {
      if (this.pruneMark !== null) await this.pool.query('delete from realtime_events where id <= $1', [this.pruneMark]);
      const r = await this.pool.query<{ id: string | null }>('select max(id)::text as id from realtime_events');
      this.pruneMark = r.rows[0]?.id ?? null;
    } catch (err) {
      this.log.warn({ err }, 'event bus: pruning old events failed');
    }
  }

  private lost(client: pg.PoolClient, err?: Error): void {
    if (this.listener !== client) return;
    this.listener = null;
    this.lostAt ??= new Date();
    // Destroys the broken connection instead of returning it to the pool.
    try {
      client.release(err ?? new Error('listener connection ended'));
    } catch {
      /* already released */
    }
    if (this.closed) return;
    this.log.warn({ err }, 'event bus: LISTEN connection lost; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = Math.min(5_000, 100 * 2 ** this.attempts);
    this.attempts += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.listen().then(
        () => this.log.info('event bus: LISTEN connection restored'),
        (err: unknown) => {
          this.log.warn({ err }, 'event bus: reconnect failed');
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }
}
