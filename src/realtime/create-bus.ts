/**
 * Picks the event bus for the database: PostgreSQL LISTEN/NOTIFY when several processes may share
 * the database — PostgreSQL itself, or the embedded database's owner and its clients, which all
 * LISTEN through the owner's socket; in-process on an embedded database nobody else can reach
 * (a command that opened it for its run).
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { socketPoolConfig } from '../db/embedded.js';
import type { Database } from '../db/index.js';
import { InProcessBus, type EventBus } from './bus.js';
import { PgBus } from './pg-bus.js';

export async function createBusFor(database: Database, log: Logger): Promise<EventBus> {
  if (database.kind === 'postgres' && database.pool) return PgBus.start(database.pool, log);
  if (database.kind === 'pglite' && database.socketPath) {
    // The owner listens through its own socket, like its clients: one path for every process.
    const pool = new pg.Pool({ ...socketPoolConfig(database.socketPath), max: 2 });
    pool.on('error', () => {});
    const bus = await PgBus.start(pool, log);
    const closeBus = bus.close.bind(bus);
    bus.close = async () => {
      await closeBus();
      await pool.end();
    };
    return bus;
  }
  return new InProcessBus();
}
