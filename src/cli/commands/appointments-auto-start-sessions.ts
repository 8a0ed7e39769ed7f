import { print, printJson, withContext, type Command, JOB_RUN_OPTIONS, jobRunFlags } from '../command.js';
import { outcomeJson, outcomeLine, type OutcomeJson } from '../conversion-output.js';
import { autoStartCounts, autoStartJob, deliverOutbox, runAutoStart, type AutoStartSummary } from '../../modules/jobs/auto-start.js';
import { runJobOnce } from '../../modules/jobs/scheduler.js';

export const command: Command = {
  name: 'appointments:auto-start-sessions',
  summary: 'Start sessions for due appointments now (the same run the worker makes every AUTO_START_INTERVAL_SECONDS)',
  usage: `
sessiongate appointments:auto-start-sessions [--limit N] [--verbose] [--json]

Converts due appointments — confirmed, no session, scheduled_at <= now() (database clock), at most
AUTO_START_MAX_LATENESS_MINUTES late, backoff reached, fewer than AUTO_START_MAX_ATTEMPTS failures —
into sessions, in batches of AUTO_START_BATCH_SIZE claimed with FOR UPDATE SKIP LOCKED. Safe to run
while workers run: nothing is converted twice. The run is recorded in job_runs like a worker run.

  --limit N    convert at most N appointments in this run (default: all that are due)
  --verbose    one line per appointment: created / skipped / failed, with the reason
  --json       print the run summary as JSON (with --verbose, also every appointment)

Exit codes: 0 ok, 1 the run failed or some appointment failed (it is retried with backoff),
3 did not run (bad option, bad configuration, database unreachable).`,
  options: JOB_RUN_OPTIONS,
  async run(args, io) {
    const { limit, verbose, json } = jobRunFlags(args);
    return withContext(async (ctx) => {
      const appointments: OutcomeJson[] = [];
      let summary: AutoStartSummary | undefined;
      const result = await runJobOnce(ctx, {
        ...autoStartJob,
        async run(c, { runId, signal }) {
          summary = await runAutoStart(c, {
            runId,
            signal,
            limit,
            trigger: 'cli',
            onBatch(outcomes) {
              if (!verbose) return;
              for (const o of outcomes) {
                if (json) appointments.push(outcomeJson(o));
                else print(io, outcomeLine(o));
              }
            },
          });
          return autoStartCounts(summary);
        },
      });
      // The sessions are committed; their "session started" notifications go out before we exit.
      let delivered = 0;
      try {
        if ((summary?.created_count ?? 0) > 0) delivered = await deliverOutbox(ctx);
      } catch (err) {
        io.stderr.write(`notification delivery failed (the worker will retry): ${err instanceof Error ? err.message : String(err)}\n`);
      }
      if (json) {
        printJson(io, {
          notifications_delivered: delivered,
          status: result.status,
          ...(summary ?? { run_id: result.runId }),
          error: result.error ?? null,
          ...(verbose ? { appointments } : {}),
        });
      } else if (summary) {
        print(
          io,
          `auto-start run ${summary.run_id}: ${summary.due_count} due, ${summary.attempted_count} attempted — ` +
            `${summary.created_count} created, ${summary.skipped_count} skipped, ${summary.failed_count} failed ` +
            `(${summary.batches} batch(es), ${Math.round(summary.runtime_ms)} ms)`,
        );
      } else {
        io.stderr.write(`auto-start run ${result.runId} failed: ${result.error}\n`);
      }
      return result.status === 'failed' || (summary?.failed_count ?? 0) > 0 ? 1 : 0;
    });
  },
};
