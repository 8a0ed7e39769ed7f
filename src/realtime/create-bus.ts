/** Picks the event bus for the database: in-process on PGlite (filled in by the realtime module). */
import type { Logger } from 'pino';
import type { Database } from '../db/index.js';
import { InProcessBus, type EventBus } from './bus.js';

export async function createBusFor(_database: Database, _log: Logger): Promise<EventBus> {
  return new InProcessBus();
}
