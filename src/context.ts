/**
 * The process's shared resources, built once and handed to the app, the worker and the CLI.
 * Closing it releases everything in reverse order.
 */
import type { Logger } from 'pino';
import type { Config } from './config/env.js';
import { effectiveEnv } from './config/env.js';
import { FlagService } from './config/flags.js';
import { openDatabase, type Database } from './db/index.js';
import { migrate } from './db/migrate.js';
import type { Db } from './db/types.js';
import { resolveJwtSecret } from './lib/auth.js';
import { createLogger } from './lib/logger.js';
import { billingSessionHooks } from './modules/billing/hooks.js';
import { createMetrics, type Metrics } from './modules/ops/metrics.js';
import type { SessionHooks } from './modules/sessions/hooks.js';
import { InProcessBus, type EventBus } from './realtime/bus.js';

export interface AppContext {
  config: Config;
  database: Database;
  db: Db;
  flags: FlagService;
  metrics: Metrics;
  log: Logger;
  bus: EventBus;
  jwtSecret: string | null;
  /** The application clock (the database clock decides "due" in SQL). */
  now: () => Date;
  /** What happens elsewhere when a session starts or ends (billing's side, connected here). */
  sessionHooks: SessionHooks;
}

export interface ContextOptions {
  role: string;
  logger?: Logger;
  flags?: FlagService;
  /** Embedded database: serve DATA_DIR to other processes if this process becomes its owner. */
  serve?: boolean;
  /** Run migrations on open (default true). */
  migrate?: boolean;
  bus?: (database: Database, log: Logger) => Promise<EventBus>;
  now?: () => Date;
}

export async function createContext(config: Config, opts: ContextOptions): Promise<AppContext> {
  const log = opts.logger ?? createLogger(config.logLevel, opts.role, config.logBufferBytes);
  const flags = opts.flags ?? new FlagService(() => effectiveEnv());
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.dbPoolSize,
    applicationName: `sessiongate-${opts.role}`,
    role: opts.role,
    serve: opts.serve ?? false,
    onWait: (holder) =>
      log.warn(
        { holder_pid: holder.pid, holder_role: holder.role },
        `waiting for process ${holder.pid} (sessiongate ${holder.role}) to release ${config.dataDir}`,
      ),
  });
  try {
    if (opts.migrate !== false) {
      const ran = await migrate(database.db);
      if (ran.length > 0) log.info({ migrations: ran }, 'applied migrations');
    }
    const metrics = createMetrics();
    const syncFlagGauges = () => {
      for (const [name, on] of Object.entries(flags.snapshot())) metrics.flags.enabled.set({ flag: name }, on ? 1 : 0);
      metrics.flags.phase.set(flags.phase());
    };
    syncFlagGauges();
    flags.onChange(syncFlagGauges);
    const bus = opts.bus ? await opts.bus(database, log) : new InProcessBus();
    const sessionHooks = billingSessionHooks({ config, metrics, log });
    return {
      config,
      database,
      db: database.db,
      flags,
      metrics,
      log,
      bus,
      jwtSecret: resolveJwtSecret(config, (m) => log.warn(m)),
      now: opts.now ?? (() => new Date()),
      sessionHooks,
    };
  } catch (err) {
    await database.close();
    throw err;
  }
}

export async function closeContext(ctx: AppContext): Promise<void> {
  await ctx.bus.close();
  await ctx.flags.close();
  await ctx.database.close();
  ctx.log.flush();
}
