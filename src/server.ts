/**
 * The process: configuration, logger, database, HTTP listener, optional worker, signals and
 * graceful shutdown. `npm start` runs this file (API + worker); `sessiongate serve` and
 * `sessiongate worker` call `runServer` / `runWorkerProcess` with their roles.
 */
import { pathToFileURL } from 'node:url';
// SIGHUP is ours (flag reload), so close-with-grace is told to leave it alone.
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, effectiveEnv, loadConfig, type Config } from './config/env.js';
import { PHASE_NAMES } from './config/flag-values.js';
import { closeContext, createContext, type AppContext } from './context.js';
import { JOBS } from './modules/jobs/index.js';
import { startMetricsServer, type MetricsServer } from './modules/ops/metrics-server.js';
import { startWorker, type Worker } from './modules/jobs/scheduler.js';
import { createBusFor } from './realtime/create-bus.js';

function logFlags(ctx: AppContext, reason: string) {
  const phase = ctx.flags.phase();
  ctx.log.info({ flags: ctx.flags.snapshot(), phase, phase_name: PHASE_NAMES[phase], reason }, 'feature flags');
}

/** SIGHUP re-reads `.env` and the flags; an invalid file keeps the running values. */
function watchSighup(ctx: AppContext): () => void {
  const onHup = () => {
    const { changed, problems } = ctx.flags.reload();
    if (problems.length > 0) ctx.log.error({ problems }, 'SIGHUP: invalid flags in .env, keeping the current values');
    else logFlags(ctx, changed ? 'SIGHUP: flags changed' : 'SIGHUP: flags unchanged');
    ctx.log.flush();
  };
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}

/** The worker's metrics listener port unless METRICS_PORT says otherwise (documented in the README). */
export const WORKER_METRICS_PORT = 9464;
/** Exit code of a process that did not start (bad configuration, database unreachable): the CLI's "did not run". */
const DID_NOT_RUN = 3;

function loadOrExit(defaults: { runWorker: boolean; metricsPort: number }): Config {
  try {
    return loadConfig(effectiveEnv(), defaults);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(DID_NOT_RUN);
    }
    throw err;
  }
}

async function contextOrExit(config: Config, role: string): Promise<AppContext> {
  try {
    return await createContext(config, { role, bus: createBusFor, serve: true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    process.stderr.write(
      `${role}: cannot open the database: ${err instanceof Error ? err.message || err.name : String(err)}${typeof code === 'string' ? ` (${code})` : ''}\n`,
    );
    process.exit(DID_NOT_RUN);
  }
}

/** The separate metrics/health listener when METRICS_PORT > 0. */
async function metricsListener(ctx: AppContext): Promise<MetricsServer | null> {
  if (ctx.config.metricsPort === 0) return null;
  let server: MetricsServer;
  try {
    server = await startMetricsServer(ctx, { port: ctx.config.metricsPort, host: ctx.config.metricsHost });
  } catch (err) {
    process.stderr.write(`cannot listen on METRICS_PORT=${ctx.config.metricsPort}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(DID_NOT_RUN);
  }
  ctx.log.info(
    { metrics_port: server.port, metrics_host: ctx.config.metricsHost },
    'metrics listener: /metrics, /health/live, /health/ready',
  );
  return server;
}

export async function runServer(opts: { role: 'start' | 'serve'; runWorkerDefault: boolean }): Promise<void> {
  const config = loadOrExit({ runWorker: opts.runWorkerDefault, metricsPort: 0 });
  const ctx = await contextOrExit(config, opts.role);
  logFlags(ctx, 'boot');
  const app = await buildApp(ctx);
  const metrics = await metricsListener(ctx);
  const worker: Worker | null = config.runWorker ? startWorker(ctx, JOBS) : null;
  const unwatch = watchSighup(ctx);

  closeWithGrace({ delay: config.shutdownTimeoutMs, logger: ctx.log, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err) ctx.log.error({ err }, 'shutting down after an error');
    else ctx.log.info({ signal }, 'shutting down');
    app.draining.value = true;
    if (metrics) metrics.draining.value = true;
    unwatch();
    await worker?.stop();
    await app.close();
    await metrics?.close();
    await closeContext(ctx);
  });

  await app.listen({ port: config.port, host: config.host });
  ctx.log.info({ database: ctx.database.kind, worker: Boolean(worker) }, 'sessiongate ready');
  ctx.log.flush(); // the boot lines are not held back by log buffering
}

export async function runWorkerProcess(): Promise<void> {
  const config = loadOrExit({ runWorker: true, metricsPort: WORKER_METRICS_PORT });
  const ctx = await contextOrExit(config, 'worker');
  logFlags(ctx, 'boot');
  const metrics = await metricsListener(ctx);
  const worker = startWorker(ctx, JOBS);
  const unwatch = watchSighup(ctx);
  ctx.log.info({ database: ctx.database.kind, metrics_port: metrics?.port ?? null }, 'sessiongate worker ready');
  ctx.log.flush();
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger: ctx.log, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err) ctx.log.error({ err }, 'worker shutting down after an error');
    else ctx.log.info({ signal }, 'worker shutting down');
    if (metrics) metrics.draining.value = true;
    unwatch();
    await worker.stop();
    await metrics?.close();
    await closeContext(ctx);
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runServer({ role: 'start', runWorkerDefault: true });
}
