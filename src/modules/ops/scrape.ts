/**
 * What a Prometheus scrape answers, on every process that serves `/metrics` (API and worker).
 *
 * Gauges that describe the database's state (`appointments_due_count`) are refreshed from the
 * database at scrape time, so every process exports the same, current number whoever does the
 * work: a scrape of an API process without a worker is as right as a scrape of the worker. The
 * alert rules take `max` of such gauges across processes, never `sum`. A refresh is reused for
 * `DB_GAUGE_TTL_MS` (several scrapers, one query) and a failed refresh keeps the last value: a
 * scrape never fails because the database is slow; `/health/ready` reports the database.
 */
import type { AppContext } from '../../context.js';
import { countDue } from '../jobs/auto-start.js';

const DB_GAUGE_TTL_MS = 5_000;

const refreshed = new WeakMap<AppContext, { at: number; running: Promise<void> | null }>();

/** Refreshes the database-state gauges (at most once per TTL per process). */
export async function refreshDatabaseGauges(ctx: AppContext): Promise<void> {
  let state = refreshed.get(ctx);
  if (!state) refreshed.set(ctx, (state = { at: 0, running: null }));
  if (state.running) return state.running;
  if (Date.now() - state.at < DB_GAUGE_TTL_MS) return;
  const s = state;
  s.running = (async () => {
    try {
      const due = await countDue(ctx.db, {
        lateness: ctx.config.autoStartMaxLatenessMinutes,
        maxAttempts: ctx.config.autoStartMaxAttempts,
      });
      ctx.metrics.conversions.due.set(due);
      s.at = Date.now();
    } catch (err) {
      ctx.log.warn({ err }, 'metrics: could not refresh appointments_due_count; exporting the last value');
    } finally {
      s.running = null;
    }
  })();
  return s.running;
}

/** The text exposition of the process's registry, database gauges refreshed first. */
export async function renderMetrics(ctx: AppContext): Promise<string> {
  await refreshDatabaseGauges(ctx);
  return ctx.metrics.registry.metrics();
}
