/**
 * The worker: runs each periodic job on its interval. Any number of worker processes may run at
 * once — correctness never depends on being alone (jobs claim rows with FOR UPDATE SKIP LOCKED
 * and decide "due" with the database clock). Each run is recorded in job_runs and logged once.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { AppContext } from '../../context.js';

export interface JobCounts {
  selected?: number;
  created?: number;
  skipped?: number;
  failed?: number;
  details?: Record<string, unknown>;
  /** The run decided not to work (a legacy trigger switched off by its flag): status `skipped`. */
  status?: 'skipped';
  /** More work is waiting (the run stopped at its budget): the worker runs it again at once. */
  more?: boolean;
}

export interface JobDefinition {
  /** Stable name: the job_runs.job value and the metric label. */
  name: string;
  /** Seconds between the end of one run and the start of the next. */
  intervalSeconds: (ctx: AppContext) => number;
  /**
   * Whether to write a job_runs row for runs that found nothing to do. True for the jobs whose
   * runs operators read as evidence (auto-start, the legacy triggers: "it ran at 12:00:30 and
   * found nothing"); false for housekeeping that runs every few seconds (expiry, notification
   * delivery, the due-count gauge), whose idle runs are only counted in `job_runs_total`.
   * Runs that did something, failed or were skipped are always recorded.
   */
  recordIdleRuns?: boolean;
  run(ctx: AppContext, run: { runId: string; signal: AbortSignal }): Promise<JobCounts>;
}

export interface JobRunResult {
  runId: string;
  status: 'succeeded' | 'failed' | 'skipped';
  durationMs: number;
  counts: JobCounts;
  error?: string;
}

/** Runs one job once, records the run (row + log line + metrics), never throws. */
export async function runJobOnce(ctx: AppContext, job: JobDefinition, signal = new AbortController().signal): Promise<JobRunResult> {
  const runId = randomUUID();
  const started = performance.now();
  let counts: JobCounts = {};
  let status: JobRunResult['status'] = 'succeeded';
  let error: string | undefined;
  try {
    counts = await job.run(ctx, { runId, signal });
    status = counts.status ?? 'succeeded';
  } catch (err) {
    status = 'failed';
    error = err instanceof Error ? err.message : String(err);
    ctx.log.error({ err, job: job.name, run_id: runId }, 'job run failed');
  }
  const durationMs = Math.round(performance.now() - started);
  ctx.metrics.jobs.duration.observe({ job_name: job.name }, durationMs / 1000);
  ctx.metrics.jobs.runs.inc({ job_name: job.name, status });
  const idle = !counts.selected && !counts.created && !counts.skipped && !counts.failed && status === 'succeeded';
  if (!idle || job.recordIdleRuns) {
    try {
      await ctx.db
        .insertInto('job_runs')
        .values({
          run_id: runId,
          job: job.name,
          started_at: new Date(Date.now() - durationMs),
          finished_at: new Date(),
          duration_ms: durationMs,
          status,
          selected: counts.selected ?? 0,
          created: counts.created ?? 0,
          skipped: counts.skipped ?? 0,
          failed: counts.failed ?? 0,
          details: JSON.stringify({ ...(counts.details ?? {}), ...(error ? { error } : {}) }),
          host: hostname(),
          pid: process.pid,
        })
        .execute();
    } catch (err) {
      ctx.log.warn({ err, job: job.name }, 'could not record job run');
    }
  }
  return { runId, status, durationMs, counts, error };
}

export interface Worker {
  stop(): Promise<void>;
}

/** Starts every job on its own loop; `stop()` waits for runs in progress to finish. */
export function startWorker(ctx: AppContext, jobs: JobDefinition[]): Worker {
  const controller = new AbortController();
  const loops = jobs.map(async (job) => {
    // Spread the first runs so several jobs (and several workers) do not start in lock step.
    await sleep(Math.random() * 1000, controller.signal);
    while (!controller.signal.aborted) {
      const result = await runJobOnce(ctx, job, controller.signal);
      if (result.status === 'succeeded' && result.counts.more) continue;
      await sleep(job.intervalSeconds(ctx) * 1000, controller.signal);
    }
  });
  ctx.log.info({ jobs: jobs.map((j) => j.name) }, 'worker started');
  return {
    async stop() {
      controller.abort();
      await Promise.allSettled(loops);
      ctx.log.info('worker stopped');
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
