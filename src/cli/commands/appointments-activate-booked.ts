import { print, printJson, withContext, type Command, JOB_RUN_OPTIONS, jobRunFlags } from '../command.js';
import { outcomeJson, outcomeLine, type OutcomeJson } from '../conversion-output.js';
import { LEGACY_DISABLED_MESSAGE } from '../../modules/jobs/legacy.js';
import { activateBooked, activateBookedJob } from '../../modules/jobs/legacy-activate-booked.js';
import { runJobOnce } from '../../modules/jobs/scheduler.js';

export const command: Command = {
  name: 'appointments:activate-booked',
  summary: 'Legacy trigger: start sessions for confirmed appointments from 5 minutes before their time',
  usage: `
sessiongate appointments:activate-booked [--limit N] [--verbose] [--json]

The legacy ActivateBookedAppointments. Starts sessions (through the single writer, so session_id is
set) for confirmed appointments without a session from 5 minutes before their time. Touches only
appointments whose session_id is null. With DISABLE_LEGACY_APPOINTMENT_TRIGGERS=true it does nothing,
logs "${LEGACY_DISABLED_MESSAGE}", records a skipped run and exits 0 — auto-start starts every due
appointment on its own.

Exit codes: 0 ok (or disabled), 1 the run failed or some appointment failed, 3 did not run.`,
  options: JOB_RUN_OPTIONS,
  async run(args, io) {
    const { limit, verbose, json } = jobRunFlags(args);
    return withContext(async (ctx) => {
      const appointments: OutcomeJson[] = [];
      const result = await runJobOnce(ctx, {
        ...activateBookedJob,
        run: (c, { runId, signal }) =>
          activateBooked(c, {
            runId,
            signal,
            limit,
            onBatch(outcomes) {
              if (!verbose) return;
              for (const o of outcomes) {
                if (json) appointments.push(outcomeJson(o));
                else print(io, outcomeLine(o));
              }
            },
          }),
      });
      const c = result.counts;
      if (json) {
        printJson(io, {
          command_name: activateBookedJob.name,
          run_id: result.runId,
          status: result.status,
          disabled: result.status === 'skipped',
          attempted_count: c.selected ?? 0,
          created_count: c.created ?? 0,
          skipped_count: c.skipped ?? 0,
          failed_count: c.failed ?? 0,
          duration_ms: result.durationMs,
          error: result.error ?? null,
          ...(verbose ? { appointments } : {}),
        });
      } else if (result.status === 'skipped') {
        print(io, `${LEGACY_DISABLED_MESSAGE} (DISABLE_LEGACY_APPOINTMENT_TRIGGERS=true): nothing to do.`);
      } else if (result.status === 'failed') {
        io.stderr.write(`activate-booked run ${result.runId} failed: ${result.error}\n`);
      } else {
        print(
          io,
          `activate-booked run ${result.runId}: ${c.selected ?? 0} attempted — ${c.created ?? 0} created, ${c.skipped ?? 0} skipped, ${c.failed ?? 0} failed`,
        );
      }
      return result.status === 'failed' || (c.failed ?? 0) > 0 ? 1 : 0;
    });
  },
};
