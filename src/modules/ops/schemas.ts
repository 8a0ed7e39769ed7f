/**
 * Response shapes of the operations reports: the conversion monitor, the rollout status and the
 * /ops page summary. The same objects are printed by the CLI (`--json`) and returned by the admin
 * API, so the schemas double as the types of the service functions.
 */
import { Type, type Static } from '@sinclair/typebox';
import { FLAG_NAMES } from '../../config/flag-values.js';
import { Literals } from '../../lib/schemas.js';

const Count = Type.Integer({ minimum: 0 });
const Time = Type.String({ format: 'date-time' });
const NullableTime = Type.Union([Time, Type.Null()]);
const Ratio = Type.Number({ minimum: 0, maximum: 1, description: 'failed / (created + failed); 0 without attempts' });

export const Level = Literals(['ok', 'warning', 'critical'] as const);
export type Level = Static<typeof Level>;

export const FlagValues = Type.Object(
  Object.fromEntries(FLAG_NAMES.map((n) => [n, Type.Boolean()])) as Record<(typeof FLAG_NAMES)[number], ReturnType<typeof Type.Boolean>>,
);
export const PhaseNumber = Type.Union([Type.Literal(1), Type.Literal(2), Type.Literal(3)]);
export const PhaseName = Literals(['monitoring', 'gradual', 'full'] as const);

const ConversionCounts = Type.Object({ created: Count, failed: Count, skipped: Count });

const GuardOperationCounts = Type.Object({
  operation: Type.String(),
  would_block: Count,
  blocked: Count,
  allowed_legacy: Count,
  not_ready: Count,
});

const GuardCounts = Type.Object({
  would_block: Count,
  blocked: Count,
  allowed_legacy: Count,
  not_ready: Count,
  /** Distinct appointments over all outcomes. */
  appointments: Count,
  by_operation: Type.Array(GuardOperationCounts),
});

const LegacyTriggerRuns = Type.Object({
  command_name: Type.String(),
  runs: Count,
  runs_processing: Count,
  appointments_processed: Count,
  failed_runs: Count,
  last_run_at: NullableTime,
});

export const MonitorSnapshot = Type.Object({
  generated_at: Time,
  phase: PhaseNumber,
  phase_name: PhaseName,
  flags: FlagValues,
  level: Level,
  due: Type.Object({
    count: Count,
    given_up: Count,
    retrying: Count,
    due_for_5m: Count,
    beyond_lateness: Count,
    oldest_scheduled_at: NullableTime,
    max_lateness_minutes: Count,
    max_attempts: Count,
  }),
  conversions: Type.Object({
    last_1m: ConversionCounts,
    last_5m: ConversionCounts,
    last_10m: ConversionCounts,
    last_created_at: NullableTime,
  }),
  error_rate: Type.Object({ last_5m: Ratio, last_10m: Ratio }),
  backlog: Type.Object({
    level: Level,
    count: Count,
    sustained_count: Count,
    warning_threshold: Count,
    critical_threshold: Count,
    sustain_minutes: Count,
  }),
  error_rate_alert: Type.Object({
    level: Level,
    rate_10m: Ratio,
    rate_5m: Ratio,
    attempted_10m: Count,
    failed_10m: Count,
    attempted_5m: Count,
    failed_5m: Count,
    warning_above: Type.Number(),
    critical_above: Type.Number(),
  }),
  stalled: Type.Boolean({ description: 'due for 5 min and no session created in 5 min (ConversionsStalled)' }),
  guards: Type.Object({ window_hours: Count, chat: GuardCounts, billing: GuardCounts }),
  legacy_triggers: Type.Object({ window_hours: Count, commands: Type.Array(LegacyTriggerRuns) }),
  /** Due appointments waiting for their patient's other live session: not failures, not a stalled worker. */
  deferred: Type.Object({
    reason: Type.String(),
    waiting: Count,
    oldest_scheduled_at: NullableTime,
    window_hours: Count,
    /** Deferral records in the window (one per blocking episode) and the appointments they concern. */
    deferrals: Count,
    appointments: Count,
  }),
  /** Confirmed, never converted, past the auto-start lateness window; `missed` after `missed_after_days`. */
  stale: Type.Object({
    count: Count,
    oldest_scheduled_at: NullableTime,
    lateness_minutes: Count,
    missed_after_days: Count,
    window_hours: Count,
    /** What appointments:settle did in the window: stale confirmed → missed, pending past its time → expired. */
    missed: Count,
    pending_expired: Count,
  }),
  /** Sessions that ended in the window, by end_reason (null end_reason counted as `unknown`). */
  sessions_ended: Type.Object({
    window_hours: Count,
    total: Count,
    by_reason: Type.Array(Type.Object({ end_reason: Type.String(), count: Count })),
  }),
});
export type MonitorSnapshot = Static<typeof MonitorSnapshot>;

const WindowOperation = Type.Object({ operation: Type.String(), events: Count, appointments: Count });
const EvidenceWindow = Type.Object({ events: Count, appointments: Count, by_operation: Type.Array(WindowOperation) });

export const RolloutExample = Type.Object({
  at: Time,
  operation: Type.String(),
  appointment_id: Type.Union([Type.Integer(), Type.Null()]),
  session_id: Type.Union([Type.Integer(), Type.Null()]),
  user_id: Type.Union([Type.Integer(), Type.Null()]),
  run_id: Type.Union([Type.String(), Type.Null()]),
  appointments: Type.Union([Count, Type.Null()]),
});

export const FlagRollout = Type.Object({
  flag: Literals(FLAG_NAMES),
  value: Type.Boolean(),
  /** The value phase 3 needs (false only for ALLOW_LEGACY_APPOINTMENT_CHAT). */
  target: Type.Boolean(),
  at_target: Type.Boolean(),
  /** `ready`, `not ready: …` for a flag still to change; `done` once at its target. */
  verdict: Type.String(),
  /** True when the flag is still to change and nothing speaks against changing it now. */
  ready: Type.Boolean(),
  reasons: Type.Array(Type.String()),
  notes: Type.Array(Type.String()),
  /** What turning it now would affect, and where the numbers come from. */
  evidence: Type.Object({
    source: Type.String(),
    last_24h: EvidenceWindow,
    last_7d: EvidenceWindow,
    newest: Type.Union([RolloutExample, Type.Null()]),
    open_legacy_appointments: Type.Optional(Count),
  }),
  /** Requests actually refused in the last 24 h while the flag is on (rollback signal). */
  blocked_24h: Count,
});
export type FlagRollout = Static<typeof FlagRollout>;

export const RolloutStatus = Type.Object({
  generated_at: Time,
  phase: PhaseNumber,
  phase_name: PhaseName,
  flags: FlagValues,
  order: Type.Object({
    prescribed: Type.Array(Literals(FLAG_NAMES)),
    skipped_steps: Type.Array(Literals(FLAG_NAMES)),
    skips_step: Type.Boolean(),
    /** The next flag to change in the prescribed order; `ready` is what `rollout:status --check` exits on. */
    next_step: Type.Union([
      Type.Object({ flag: Literals(FLAG_NAMES), set_to: Type.Boolean(), verdict: Type.String(), ready: Type.Boolean() }),
      Type.Null(),
    ]),
  }),
  flag_status: Type.Array(FlagRollout),
});
export type RolloutStatus = Static<typeof RolloutStatus>;

export const OpsSummary = Type.Object({
  generated_at: Time,
  monitor: MonitorSnapshot,
  rollout: RolloutStatus,
  backlog_trend: Type.Object({
    direction: Literals(['rising', 'falling', 'flat'] as const),
    step_minutes: Count,
    points: Type.Array(Type.Object({ at: Time, due: Count })),
  }),
  conversions_last_hour: Type.Object({
    created: Count,
    failed: Count,
    skipped: Count,
    bucket_minutes: Count,
    buckets: Type.Array(Type.Object({ start: Time, created: Count, failed: Count, skipped: Count })),
    failures_by_reason: Type.Array(Type.Object({ reason: Type.String(), count: Count })),
  }),
  recent_job_runs: Type.Array(
    Type.Object({
      run_id: Type.String(),
      job: Type.String(),
      started_at: Time,
      duration_ms: Type.Union([Type.Integer(), Type.Null()]),
      status: Type.String(),
      selected: Count,
      created: Count,
      skipped: Count,
      failed: Count,
    }),
  ),
});
export type OpsSummary = Static<typeof OpsSummary>;
