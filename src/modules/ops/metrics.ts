/**
 * Every Prometheus metric the service exports, grouped in one registry per process (tests build
 * many apps in one process, so nothing is registered globally). Labels never carry ids: ids are
 * unbounded; they go to log lines and guard-event rows instead.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BILLING_ENDPOINTS, CHAT_OPERATIONS } from '../guard/decision.js';
import { LEGACY_TRIGGER_COMMANDS } from '../jobs/legacy.js';

/** `path` label of `chat_operations_total`: the legacy appointment route or the session route. */
export const CHAT_PATHS = ['legacy', 'session'] as const;
/** `reason` label of `appointment_session_conversion_failed_total` (a closed set). */
export const CONVERSION_FAILURE_REASONS = [
  'invalid_appointment_state',
  'missing_doctor_or_patient',
  'createSession_validation_failed',
  'createSession_conflict_existing_session',
  'db_update_failed',
  'unknown_error',
] as const;
/** `source` label of `appointment_sessions_created_total`: the paths through the single writer. */
export const CONVERSION_SOURCES = ['auto_start', 'recovery', 'activate_booked', 'start_session'] as const;
export const MODALITIES = ['text', 'voice', 'video'] as const;

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const r = [registry];

  const metrics = {
    registry,
    http: {
      requests: new Counter({
        name: 'http_requests_total',
        help: 'HTTP requests by route and status code',
        labelNames: ['method', 'route', 'status_code'] as const,
        registers: r,
      }),
      duration: new Histogram({
        name: 'http_request_duration_seconds',
        help: 'HTTP request duration',
        labelNames: ['method', 'route', 'status_code'] as const,
        buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: r,
      }),
    },
    flags: {
      enabled: new Gauge({
        name: 'feature_flag_enabled',
        help: 'Session-gating feature flags (1 on, 0 off)',
        labelNames: ['flag'] as const,
        registers: r,
      }),
      phase: new Gauge({ name: 'rollout_phase', help: 'Rollout phase: 1 monitoring, 2 gradual, 3 full', registers: r }),
    },
    guard: {
      chatBlocked: new Counter({
        name: 'chat_blocked_session_context_required_total',
        help: 'Legacy chat requests on an appointment with a session (enforced="false": would-block)',
        labelNames: ['operation', 'enforced'] as const,
        registers: r,
      }),
      chatOperations: new Counter({
        name: 'chat_operations_total',
        help: 'Chat operations by path (legacy appointment route or session route)',
        labelNames: ['operation', 'path'] as const,
        registers: r,
      }),
      billingBlocked: new Counter({
        name: 'billing_blocked_session_context_required_total',
        help: 'Legacy billing requests on an appointment with a session (enforced="false": would-block)',
        labelNames: ['endpoint', 'enforced'] as const,
        registers: r,
      }),
    },
    legacy: {
      executions: new Counter({
        name: 'legacy_trigger_executions_total',
        help: 'Runs of the legacy appointment triggers',
        labelNames: ['command_name'] as const,
        registers: r,
      }),
      processed: new Counter({
        name: 'legacy_trigger_appointments_processed_total',
        help: 'Appointments processed by the legacy triggers',
        labelNames: ['command_name'] as const,
        registers: r,
      }),
      sessionTouched: new Counter({
        name: 'legacy_trigger_session_appointments_touched_total',
        help: 'Appointments WITH a session touched by a legacy trigger (must stay 0)',
        labelNames: ['command_name'] as const,
        registers: r,
      }),
    },
    conversions: {
      created: new Counter({
        name: 'appointment_sessions_created_total',
        help: 'Sessions created for appointments',
        labelNames: ['modality', 'source'] as const,
        registers: r,
      }),
      failed: new Counter({
        name: 'appointment_session_conversion_failed_total',
        help: 'Failed appointment to session conversions by reason',
        labelNames: ['reason'] as const,
        registers: r,
      }),
      deferred: new Counter({
        name: 'appointment_session_conversion_deferred_total',
        help: 'Due appointments that waited because their patient was in another live session (not failures)',
        registers: r,
      }),
      settled: new Counter({
        name: 'appointments_settled_total',
        help: 'Appointments the worker settled: pending past their time (expired), confirmed never converted (missed)',
        labelNames: ['status'] as const,
        registers: r,
      }),
      due: new Gauge({
        name: 'appointments_due_count',
        help: 'Confirmed appointments without a session whose time has come (from the database)',
        registers: r,
      }),
    },
    jobs: {
      duration: new Histogram({
        name: 'job_run_duration_seconds',
        help: 'Duration of periodic job runs',
        labelNames: ['job_name'] as const,
        buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60],
        registers: r,
      }),
      runs: new Counter({
        name: 'job_runs_total',
        help: 'Periodic job runs by outcome',
        labelNames: ['job_name', 'status'] as const,
        registers: r,
      }),
    },
    billing: {
      unitsCharged: new Counter({
        name: 'billing_units_charged_total',
        help: 'Consultation units charged through the ledger',
        labelNames: ['modality', 'reason'] as const,
        registers: r,
      }),
      sessionsEndedNoCredit: new Counter({
        name: 'billing_sessions_ended_credits_exhausted_total',
        help: 'Sessions the server ended because the patient ran out of credits',
        registers: r,
      }),
    },
    sessions: {
      endedByLimit: new Counter({
        name: 'sessions_ended_by_limit_total',
        help: 'Sessions the worker ended without a client, by end_reason (inactive, disconnected, time_limit)',
        labelNames: ['reason'] as const,
        registers: r,
      }),
    },
    retention: {
      pruned: new Counter({
        name: 'records_pruned_total',
        help: 'Record rows deleted by the retention job, by table',
        labelNames: ['table'] as const,
        registers: r,
      }),
    },
    realtime: {
      connections: new Gauge({ name: 'websocket_connections', help: 'Open WebSocket connections', registers: r }),
      events: new Counter({
        name: 'websocket_events_sent_total',
        help: 'Events sent to WebSocket clients',
        labelNames: ['event'] as const,
        registers: r,
      }),
    },
  };
  initialiseLabelSets(metrics);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Exports every known label combination of the guard, legacy-trigger and conversion counters at
 * 0 from the first scrape. prom-client only exports a labelled series once it is incremented, so
 * the first event would otherwise appear as a new series already at 1, which `rate()` and
 * `increase()` cannot see (they need two samples): the first blocked chat request of a process
 * would never move ChatBlockedRatioHigh. Only closed label sets are listed — never ids.
 */
function initialiseLabelSets(m: Metrics): void {
  for (const operation of CHAT_OPERATIONS) {
    for (const enforced of ['true', 'false']) m.guard.chatBlocked.inc({ operation, enforced }, 0);
    for (const path of CHAT_PATHS) m.guard.chatOperations.inc({ operation, path }, 0);
  }
  for (const endpoint of BILLING_ENDPOINTS) {
    for (const enforced of ['true', 'false']) m.guard.billingBlocked.inc({ endpoint, enforced }, 0);
  }
  for (const command_name of LEGACY_TRIGGER_COMMANDS) {
    m.legacy.executions.inc({ command_name }, 0);
    m.legacy.processed.inc({ command_name }, 0);
    m.legacy.sessionTouched.inc({ command_name }, 0);
  }
  for (const modality of MODALITIES) {
    for (const source of CONVERSION_SOURCES) m.conversions.created.inc({ modality, source }, 0);
  }
  for (const reason of CONVERSION_FAILURE_REASONS) m.conversions.failed.inc({ reason }, 0);
  for (const reason of ['inactive', 'disconnected', 'time_limit']) m.sessions.endedByLimit.inc({ reason }, 0);
  for (const status of ['expired', 'missed']) m.conversions.settled.inc({ status }, 0);
}
