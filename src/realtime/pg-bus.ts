/**
 * The cross-process event bus on PostgreSQL `LISTEN/NOTIFY`: what any API or worker process
 * publishes reaches the subscribers of every process sharing the database.
 *
 * - Local subscribers get an event at once (next microtask); other processes get it through
 *   NOTIFY on one channel, and each process ignores its own notifications (origin id).
 * - Publishing batches: all events published within 10 ms leave in ONE statement
 *   (`select pg_notify(...) from unnest(...)`), in order, outside the publisher's transaction.
 *   (NOTIFY inside a write transaction would hold PostgreSQL's global notify lock through that
 *   transaction's commit and WAL flush, serialising every message commit of the cluster.)
 * - NOTIFY payloads must stay under 8000 bytes. An event whose JSON is larger (a 1000-character
 *   message in a 4-byte script, a big SDP offer) is split into frames of ≤ 7,600 bytes that are
 *   sent in the same statement — hence the same transaction, delivered together and in order —
 *   and reassembled by the receivers. Nothing is trimmed, no side table is needed.
 * - Listening uses one dedicated connection taken from the pool. If it breaks (server restart,
 *   `pg_terminate_backend`), it is replaced with backoff (100 ms → 5 s). Events published while
 *   no listener is connected are lost for this process, so once the listener is back the bus
 *   hands its own subscribers a `resync` event (`broadcast`: the gateway sends it to every
 *   connection) and clients re-read from the database (`GET …/messages?after=<last id>`), which
 *   is the source of truth — the bus only carries notifications of what is already committed.
 * - A half-open LISTEN connection (peer gone without a FIN) never errors by itself: the pool's
 *   connections use TCP keepalive, and every SELF_CHECK_MS the listener runs `select 1` with a
 *   timeout; no answer in time counts as a lost connection (detected within ~30 s).
 * - `publishInTransaction` (the notification outbox) NOTIFYs inside the caller's transaction:
 *   PostgreSQL delivers at commit and only if it commits, so the outbox row marked delivered in
 *   that transaction was published. (Low volume: the global notify lock this takes through the
 *   commit does not matter there, unlike for chat messages.)
 *
 * - Events of one flush are packed into as few notifications as fit (a JSON array of events per
 *   notification), so under load PostgreSQL handles one notification for many events.
 *
 * Frame format (text): `<origin> <seq> <index> <count>|<slice of a JSON array of events>`.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type pg from 'pg';
import type { Executor } from '../db/types.js';
import type { Logger } from 'pino';
import { RESYNC_EVENT, type BusEvent, type BusHandler, type EventBus } from './bus.js';

export const CHANNEL = 'sessiongate_events';
/** Upper bound of one NOTIFY payload we send (PostgreSQL's limit is 8000 bytes). */
export const MAX_FRAME_BYTES = 7_600;
/**
 * Events published within this window leave in one statement. Under load that turns one NOTIFY
 * query per message into one per many messages, for at most 10 ms more cross-process latency (local
 * subscribers are not delayed at all).
 */
const FLUSH_WINDOW_MS = 10;
/** One statement for a batch (prepared once per connection), answering one row however many frames. */
// The frames travel as one JSON array parameter (serialised natively; a text[] parameter would be
// escaped character by character in JavaScript).
const NOTIFY_SQL = 'select count(*) from (select pg_notify($1, f) from json_array_elements_text($2::json) as f) as sent';
/** Frames per statement: bounds one statement's parameter size under a burst. */
const MAX_FRAMES_PER_STATEMENT = 2_000;
/** How often the LISTEN connection proves it is alive, and how long it has to answer. */
const SELF_CHECK_MS = 15_000;
const SELF_CHECK_TIMEOUT_MS = 10_000;
/** Incomplete multi-frame events are dropped after this long (a sender died mid-statement — cannot happen in one transaction, but memory must stay bounded regardless). */
const REASSEMBLY_TTL_MS = 30_000;

/** Splits `s` into slices of at most `maxBytes` UTF-8 bytes, never inside a code point. */
export function splitByBytes(s: string, maxBytes: number): string[] {
  // Every UTF-16 unit costs at most 3 UTF-8 bytes (a surrogate pair: 4 bytes for 2 units).
  if (s.length * 3 <= maxBytes || Buffer.byteLength(s) <= maxBytes) return [s];
  const out: string[] = [];
  let start = 0;
  let bytes = 0;
  let i = 0;
  while (i < s.length) {
    const cp = s.codePointAt(i)!;
    const units = cp > 0xffff ? 2 : 1;
    const b = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + b > maxBytes) {
      out.push(s.slice(start, i));
      start = i;
      bytes = 0;
    }
    bytes += b;
    i += units;
  }
  out.push(s.slice(start));
  return out;
}

// `<origin> <seq> <index> <count>|` is far shorter than this.
const HEADER_ROOM = 64;

/** Encodes one message (a JSON array of events) as NOTIFY frames. */
export function encodeFrames(origin: string, seq: number, json: string): string[] {
  const slices = splitByBytes(json, MAX_FRAME_BYTES - HEADER_ROOM);
  return slices.map((slice, i) => `${origin} ${seq} ${i} ${slices.length}|${slice}`);
}

/**
 * Packs event JSON texts, in order, into as few messages as possible: each message a JSON array
 * that fits one frame. An event too big for a frame travels alone (and is split into frames).
 * Under load one notification then carries many events — PostgreSQL queues, signals and delivers
 * one notification instead of one per event.
 */
export function packEvents(jsons: string[], maxBytes = MAX_FRAME_BYTES - HEADER_ROOM): string[] {
  const out: string[] = [];
  let group: string[] = [];
  let size = 2; // the brackets
  for (const j of jsons) {
    const bytes = Buffer.byteLength(j);
    if (group.length > 0 && size + 1 + bytes > maxBytes) {
      out.push(`[${group.join(',')}]`);
      group = [];
      size = 2;
    }
    group.push(j);
    size += bytes + (group.length > 1 ? 1 : 0);
  }
  if (group.length > 0) out.push(`[${group.join(',')}]`);
  return out;
}

export interface Frame {
  origin: string;
  seq: number;
  index: number;
  count: number;
  body: string;
}

export function decodeFrame(payload: string): Frame | null {
  const bar = payload.indexOf('|');
  if (bar < 0) return null;
  const [origin, seq, index, count] = payload.slice(0, bar).split(' ');
  const f = { origin: origin ?? '', seq: Number(seq), index: Number(index), count: Number(count), body: payload.slice(bar + 1) };
  if (!f.origin || !Number.isSafeInteger(f.seq) || !Number.isSafeInteger(f.index) || !Number.isSafeInteger(f.count)) return null;
  if (f.count < 1 || f.index < 0 || f.index >= f.count || f.count > 10_000) return null;
  return f;
}

/** Reassembles frames into messages (JSON arrays of events). */
export class FrameAssembler {
  private readonly partial = new Map<string, { parts: (string | undefined)[]; received: number; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Returns the complete message when `f` completes one, else null. */
  add(f: Frame): string | null {
    if (f.count === 1) return f.body;
    const key = `${f.origin}:${f.seq}`;
    let p = this.partial.get(key);
    if (!p) {
      this.sweep();
      p = { parts: new Array<string | undefined>(f.count), received: 0, at: this.now() };
      this.partial.set(key, p);
    }
    if (p.parts.length !== f.count || p.parts[f.index] !== undefined) return null;
    p.parts[f.index] = f.body;
    p.received += 1;
    if (p.received < f.count) return null;
    this.partial.delete(key);
    return p.parts.join('');
  }

  get pending(): number {
    return this.partial.size;
  }

  private sweep(): void {
    const cutoff = this.now() - REASSEMBLY_TTL_MS;
    for (const [k, p] of this.partial) if (p.at < cutoff) this.partial.delete(k);
  }
}

export class PgBus implements EventBus {
  private readonly handlers = new Set<BusHandler>();
  private readonly origin = randomBytes(6).toString('hex');
  private readonly originPrefix = `${this.origin} `;
  private readonly assembler = new FrameAssembler();
  private seq = 0;
  /** Events waiting for the next flush, and the promise their publishers wait on. */
  private pending: string[] = [];
  private pendingDone: { promise: Promise<void>; resolve: () => void } | null = null;
  private flushing: Promise<void> | null = null;
  private flushScheduled = false;
  private listener: pg.PoolClient | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private attempts = 0;
  private closed = false;
  /** When the LISTEN connection was lost (null while listening): the resync says since when. */
  private lostAt: Date | null = null;
  private selfCheckTimer: NodeJS.Timeout | null = null;
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
    bus.selfCheckTimer = setInterval(() => void bus.checkListener(), bus.selfCheck.everyMs);
    bus.selfCheckTimer.unref();
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
    if (events.length === 0) return () => {};
    const frames = packEvents(events.map((e) => JSON.stringify(e))).flatMap((message) => encodeFrames(this.origin, ++this.seq, message));
    for (let i = 0; i < frames.length; i += MAX_FRAMES_PER_STATEMENT) {
      const batch = JSON.stringify(frames.slice(i, i + MAX_FRAMES_PER_STATEMENT));
      await sql`select count(*) from (select pg_notify(${CHANNEL}, f) from json_array_elements_text(${batch}::json) as f) as sent`.execute(
        trx,
      );
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
    if (this.selfCheckTimer) clearInterval(this.selfCheckTimer);
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
    queueMicrotask(() => {
      for (const h of this.handlers) {
        try {
          h(event);
        } catch {
          /* a subscriber's failure is its own */
        }
      }
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setTimeout(() => {
      this.flushScheduled = false;
      void this.flushNow();
    }, FLUSH_WINDOW_MS);
  }

  /** Sends everything pending; one statement per batch, batches in order. */
  private async flushNow(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    const done = this.pendingDone;
    this.pending = [];
    this.pendingDone = null;
    this.flushing = (async () => {
      const frames = packEvents(batch).flatMap((message) => encodeFrames(this.origin, ++this.seq, message));
      try {
        for (let i = 0; i < frames.length; i += MAX_FRAMES_PER_STATEMENT) {
          const values = [CHANNEL, JSON.stringify(frames.slice(i, i + MAX_FRAMES_PER_STATEMENT))];
          await this.pool.query({ name: 'sessiongate_bus_notify_v2', text: NOTIFY_SQL, values });
        }
      } catch (err) {
        // Best effort: the events are already committed facts in the database; subscribers on
        // other processes miss the live notification and catch up on their next read.
        this.log.warn({ err, events: batch.length }, 'event bus: NOTIFY failed; events not delivered to other processes');
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
      if (msg.channel === CHANNEL && msg.payload !== undefined) this.onNotification(msg.payload);
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

  private onNotification(payload: string): void {
    // Our own notifications come back too; they were delivered locally already.
    if (payload.startsWith(this.originPrefix)) return;
    const frame = decodeFrame(payload);
    if (!frame) return;
    const json = this.assembler.add(frame);
    if (json === null) return;
    let events: unknown;
    try {
      events = JSON.parse(json);
    } catch {
      this.log.warn('event bus: undecodable notification dropped');
      return;
    }
    if (!Array.isArray(events)) return;
    for (const event of events as BusEvent[]) {
      if (typeof event?.type !== 'string') continue;
      for (const h of this.handlers) {
        try {
          h(event);
        } catch {
          /* a subscriber's failure is its own */
        }
      }
    }
  }
}
