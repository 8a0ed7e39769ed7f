import { print, printJson, withContext, type Command, JOB_RUN_OPTIONS, jobRunFlags } from '../command.js';
import { LEGACY_DISABLED_MESSAGE } from '../../modules/jobs/legacy.js';
import { processLegacySessions, processSessionsJob, type ClosedAppointment } from '../../modules/jobs/legacy-process-sessions.js';
import { runJobOnce } from '../../modules/jobs/scheduler.js';

export const command: Command = {
  name: 'appointments:process-sessions',
  summary: 'Legacy trigger: close legacy in_progress appointments (no session) whose time is over',
  usage: `
sessiongate appointments:process-sessions [--limit N] [--verbose] [--json]

The legacy ProcessAppointmentSessions. Closes appointments started under the old flow — in_progress
with NO session — once scheduled_at + duration_minutes has passed: completed when both participants
took part (both legacy activity flags, or a message from each: the legacy billing endpoints' rule),
missed (no-show) otherwise. Never touches confirmed appointments nor
any appointment with a session. Does not bill: legacy appointments are billed through the legacy
billing endpoints (end-session, process-payment, process-deduction), once per appointment.
With DISABLE_LEGACY_APPOINTMENT_TRIGGERS=true it does nothing, logs "${LEGACY_DISABLED_MESSAGE}",
records a skipped run and exits 0.

Exit codes: 0 ok (or disabled), 1 the run failed, 3 did not run.`,
  options: JOB_RUN_OPTIONS,
  async run(args, io) {
    const { limit, verbose, json } = jobRunFlags(args);
    return withContext(async (ctx) => {
      const closed: ClosedAppointment[] = [];
      const result = await runJobOnce(ctx, {
        ...processSessionsJob,
        run: (c, { runId, signal }) =>
          processLegacySessions(c, {
            runId,
            signal,
            limit,
            onClosed(rows) {
              if (!verbose) return;
              if (json) closed.push(...rows);
              else for (const r of rows) print(io, `${r.status.padEnd(9)} appointment ${r.id}`);
            },
          }),
      });
      const d = (result.counts.details ?? {}) as { completed?: number; missed?: number };
      if (json) {
        printJson(io, {
          command_name: processSessionsJob.name,
          run_id: result.runId,
          status: result.status,
          disabled: result.status === 'skipped',
          completed_count: d.completed ?? 0,
          missed_count: d.missed ?? 0,
          duration_ms: result.durationMs,
          error: result.error ?? null,
          ...(verbose ? { appointments: closed.map((r) => ({ appointment_id: r.id, status: r.status })) } : {}),
        });
      } else if (result.status === 'skipped') {
        print(io, `${LEGACY_DISABLED_MESSAGE} (DISABLE_LEGACY_APPOINTMENT_TRIGGERS=true): nothing to do.`);
      } else if (result.status === 'failed') {
        io.stderr.write(`process-sessions run ${result.runId} failed: ${result.error}\n`);
      } else {
        print(io, `process-sessions run ${result.runId}: ${d.completed ?? 0} completed, ${d.missed ?? 0} missed (no-show)`);
      }
      return result.status === 'failed' ? 1 : 0;
    });
  },
};
