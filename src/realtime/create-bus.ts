/**
 * Picks the event bus for the database: PostgreSQL LISTEN/NOTIFY when several processes may share
 * the database; in-process on PGlite (one process owns the embedded database).
 */
import type { Logger } from 'pino';
import type { Database } from '../db/index.js';
import { InProcessBus, type EventBus } from './bus.js';
import { PgBus } from './pg-bus.js';

export async function createBusFor(database: Database, log: Logger): Promise<EventBus> {
  if (database.kind === 'postgres' && database.pool) return PgBus.start(database.pool, log);
  return new InProcessBus();
}
