/**
 * The cross-process event bus: what one process publishes, subscribers on every process see.
 * In-process on PGlite (one process owns the embedded database); PostgreSQL LISTEN/NOTIFY when
 * several processes share one PostgreSQL (see realtime/pg-bus.ts).
 */
export interface BusEvent {
  /** Event name, e.g. `message.created`. */
  type: string;
  /** The session the event belongs to (subscribers filter on it), if any. */
  sessionId?: number;
  /** Users the event is addressed to (notifications), if any. */
  userIds?: number[];
  payload: unknown;
}

export type BusHandler = (event: BusEvent) => void;

export interface EventBus {
  publish(event: BusEvent): Promise<void>;
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

  subscribe(handler: BusHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }
}
