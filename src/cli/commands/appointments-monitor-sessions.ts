import { print, printJson, withContext, type Command } from '../command.js';
import { exitCodeFor, monitorSnapshot } from '../../modules/ops/monitor.js';
import type { MonitorSnapshot } from '../../modules/ops/schemas.js';

export const command: Command = {
  name: 'appointments:monitor-sessions',
  summary: 'Appointment-to-session conversion health: backlog, error rate, guards, legacy triggers',
  usage: `sessiongate appointments:monitor-sessions [--json] [--alert]

Every number comes from the database (appointments, conversion records, sessions, guard events,
job runs), so it is the same whichever process asks.

  backlog level     warning when >= 10 appointments have been due for 5 minutes, critical >= 50
  error-rate level  failed / (created + failed): warning > 2 % over 10 min, critical > 10 % over 5 min

  deferred          due appointments waiting for their patient's other live session (not failures)
  stale             confirmed, never converted, past the lateness window; missed after
                    STALE_APPOINTMENT_DAYS
  sessions ended    in the last 24 h, by end_reason

--alert  exit with the worse level: 0 ok, 1 warning, 2 critical (for cron or a health check).
         Without --alert the command exits 0 whatever the levels are.

Exit codes: 0 ok, 1 warning, 2 critical (with --alert), 3 the monitor did not run (bad option,
bad configuration, database unreachable) — alert on 3 too: it means nothing was checked.`,
  options: { json: { type: 'boolean' }, alert: { type: 'boolean' } },
  async run(args, io) {
    const snap = await withContext(async (ctx) => monitorSnapshot(ctx.db, await ctx.flags.current(), ctx.config));
    if (args.values['json']) printJson(io, snap);
    else for (const line of render(snap)) print(io, line);
    return args.values['alert'] ? exitCodeFor(snap.level) : 0;
  },
};

const pct = (r: number) => `${(r * 100).toFixed(2)} %`;
const LEVEL_MARK = { ok: 'OK', warning: 'WARNING', critical: 'CRITICAL' } as const;

function table(rows: (string | number)[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((v, i) => (typeof v === 'number' ? String(v).padStart(widths[i]!) : String(v).padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

function render(s: MonitorSnapshot): string[] {
  const c = s.conversions;
  const flags = Object.entries(s.flags)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return [
    `Appointment session conversion — ${s.generated_at} (database clock)`,
    `Rollout phase ${s.phase} (${s.phase_name}); ${flags}`,
    '',
    ...table([
      ['Due now', s.due.count, `(given up: ${s.due.given_up}, retrying: ${s.due.retrying}, due for >= 5 min: ${s.due.due_for_5m})`],
      [
        'Oldest due since',
        s.due.oldest_scheduled_at ?? '—',
        `(auto-start lateness ${s.due.max_lateness_minutes} min, max attempts ${s.due.max_attempts})`,
      ],
      ['Older than lateness', s.due.beyond_lateness, '(only appointments:recover-sessions picks these up)'],
    ]),
    '',
    ...table([
      ['', 'last 1 min', 'last 5 min', 'last 10 min'],
      ['Created', c.last_1m.created, c.last_5m.created, c.last_10m.created],
      ['Failed', c.last_1m.failed, c.last_5m.failed, c.last_10m.failed],
      ['Skipped', c.last_1m.skipped, c.last_5m.skipped, c.last_10m.skipped],
      ['Error rate', '', pct(s.error_rate.last_5m), pct(s.error_rate.last_10m)],
    ]),
    `Last session created: ${c.last_created_at ?? 'never'}`,
    '',
    `Backlog:    ${LEVEL_MARK[s.backlog.level]} — ${s.backlog.sustained_count} due for >= ${s.backlog.sustain_minutes} min ` +
      `(warning >= ${s.backlog.warning_threshold}, critical >= ${s.backlog.critical_threshold})`,
    `Error rate: ${LEVEL_MARK[s.error_rate_alert.level]} — ${pct(s.error_rate_alert.rate_10m)} of ${s.error_rate_alert.attempted_10m} over 10 min, ` +
      `${pct(s.error_rate_alert.rate_5m)} of ${s.error_rate_alert.attempted_5m} over 5 min (warning > 2 %, critical > 10 %)`,
    ...(s.stalled ? ['Stalled:    appointments due for 5 min and no session created in 5 min — is the worker running?'] : []),
    `Overall:    ${LEVEL_MARK[s.level]}`,
    '',
    ...outcomes(s),
    '',
    `Guard events, last ${s.guards.window_hours} h`,
    ...table([
      ['', 'would-block', 'blocked', 'allowed-legacy', 'not-ready', 'appointments'],
      [
        'chat',
        s.guards.chat.would_block,
        s.guards.chat.blocked,
        s.guards.chat.allowed_legacy,
        s.guards.chat.not_ready,
        s.guards.chat.appointments,
      ],
      [
        'billing',
        s.guards.billing.would_block,
        s.guards.billing.blocked,
        s.guards.billing.allowed_legacy,
        s.guards.billing.not_ready,
        s.guards.billing.appointments,
      ],
    ]),
    '',
    `Legacy trigger runs, last ${s.legacy_triggers.window_hours} h`,
    ...table([
      ['command', 'runs', 'processed something', 'appointments', 'failed', 'last run'],
      ...s.legacy_triggers.commands.map((l) => [
        l.command_name,
        l.runs,
        l.runs_processing,
        l.appointments_processed,
        l.failed_runs,
        l.last_run_at ?? '—',
      ]),
    ]),
  ];
}

/** Deferred, stale and ended-by-reason counts (src/modules/ops/outcomes.ts). */
function outcomes(s: MonitorSnapshot): string[] {
  const d = s.deferred;
  const st = s.stale;
  const e = s.sessions_ended;
  return [
    ...table([
      [
        'Deferred now',
        d.waiting,
        `(${d.reason}: waiting for the patient's other session; oldest ${d.oldest_scheduled_at ?? '—'}; ` +
          `${d.deferrals} deferral(s) of ${d.appointments} appointment(s) in ${d.window_hours} h)`,
      ],
      [
        'Stale',
        st.count,
        `(confirmed, past the ${st.lateness_minutes}-min lateness, not converted; oldest ${st.oldest_scheduled_at ?? '—'}; ` +
          `missed after ${st.missed_after_days} d)`,
      ],
      [
        'Settled',
        st.missed + st.pending_expired,
        `(last ${st.window_hours} h: ${st.missed} stale → missed, ${st.pending_expired} pending → expired)`,
      ],
    ]),
    '',
    `Sessions ended, last ${e.window_hours} h: ${e.total}`,
    ...(e.by_reason.length > 0 ? table([['end reason', 'sessions'], ...e.by_reason.map((r) => [r.end_reason, r.count])]) : []),
  ];
}
