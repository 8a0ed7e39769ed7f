/**
 * The cross-process event bus: what one process publishes, subscribers on every process see.
 * In-process on PGlite (one process owns the embedded database); PostgreSQL LISTEN/NOTIFY when
 * several processes share one PostgreSQL (see realtime/pg-bus.ts).
 */
import type { Executor } from '../db/types.js';

export interface BusEvent {
  /** Event name, e.g. `message.created`. */
  type: string;
  /** The session the event belongs to (subscribers filter on it), if any. */
  sessionId?: number;
  /** Users the event is addressed to (notifications), if any. */
  userIds?: number[];
  /** For every connection of the process (the bus's own `resync`); never sent to other processes. */
  broadcast?: boolean;
  payload: unknown;
}

/**
 * Published by a bus to its own process's subscribers when it may have missed events from other
 * processes (its LISTEN connection was lost and is back): clients re-read what they show.
 */
export const RESYNC_EVENT = 'resync';

export type BusHandler = (event: BusEvent) => void;

export interface EventBus {
  /** Best effort, batched: resolves when the events left (or failed to leave; never rejects). */
  publish(event: BusEvent): Promise<void>;
  /**
   * Sends the events as part of the transaction `trx`: other processes get them when it commits
   * and only if it commits (PostgreSQL NOTIFY is transactional), so whatever the transaction marks
   * "delivered" was published. Returns the delivery to this process's subscribers, to call after
   * the commit. Rejects (and the transaction rolls back) when the events cannot be sent.
   */
  publishInTransaction(trx: Executor, events: BusEvent[]): Promise<() => void>;
  subscribe(handler: BusHandler): () => void;
  close(): Promise<void>;
}

export class InProcessBus implements EventBus {
  private readonly handlers = new Set<BusHandler>();

  async publish(event: BusEvent): Promise<void> {
    // Delivered on the next tick so a publisher inside a request never runs subscriber code
    // synchronously (and a subscriber's exception never fails the publisher).
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

  async publishInTransaction(_trx: Executor, events: BusEvent[]): Promise<() => void> {
    return () => {
      for (const e of events) void this.publish(e);
    };
  }

  subscribe(handler: BusHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }
}
