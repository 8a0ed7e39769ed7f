/**
 * What the two legacy triggers (activate-booked, process-sessions) share: the
 * DISABLE_LEGACY_APPOINTMENT_TRIGGERS switch and their metrics.
 *
 * With the flag on they do nothing: one log line `Legacy appointment triggers disabled`, a
 * `skipped` job run, exit code 0 from the CLI. Turning it on leaves no gap: auto-start alone
 * starts every due appointment (activate-booked only ever started them up to 5 minutes early),
 * and process-sessions has nothing to close once no appointment is started outside a session.
 *
 * With the flag off they only touch appointments whose `session_id` is null — a condition of
 * their SQL, under the row lock — so `legacy_trigger_session_appointments_touched_total` stays 0
 * by construction. It is still measured (from what the statements return), so the alert on it
 * would catch a regression.
 */
import type { AppContext } from '../../context.js';
import type { JobCounts } from './scheduler.js';

/** The legacy trigger commands: their `job_runs.job` names and the `command_name` metric label. */
export const LEGACY_TRIGGER_COMMANDS = ['appointments:activate-booked', 'appointments:process-sessions'] as const;

export type LegacyCommand = (typeof LEGACY_TRIGGER_COMMANDS)[number];

export const LEGACY_DISABLED_MESSAGE = 'Legacy appointment triggers disabled';

/** Runs `body` unless the flag disables the legacy triggers (evaluated now, so SIGHUP applies). */
export async function legacyTrigger(
  ctx: AppContext,
  command: LegacyCommand,
  runId: string,
  body: () => Promise<JobCounts>,
): Promise<JobCounts> {
  const flags = await ctx.flags.current();
  if (flags.DISABLE_LEGACY_APPOINTMENT_TRIGGERS) {
    ctx.log.info(
      { event: 'legacy_trigger_disabled', command_name: command, run_id: runId, flag: 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS' },
      LEGACY_DISABLED_MESSAGE,
    );
    return { status: 'skipped', details: { command_name: command, disabled_by: 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS' } };
  }
  ctx.metrics.legacy.executions.inc({ command_name: command });
  return body();
}

export function countLegacy(ctx: AppContext, command: LegacyCommand, processed: number, withSession: number): void {
  if (processed > 0) ctx.metrics.legacy.processed.inc({ command_name: command }, processed);
  if (withSession > 0) {
    ctx.metrics.legacy.sessionTouched.inc({ command_name: command }, withSession);
    ctx.log.error({ command_name: command, count: withSession }, 'legacy trigger touched appointments that have a session');
  }
}
