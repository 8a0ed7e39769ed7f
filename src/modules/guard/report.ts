/**
 * How a SessionContextGuard decision is reported: one log line (with the ids), one metric
 * increment (labels without ids) and, written by the caller, one guard-event row
 * (`recordGuardEvent`). Shared by the chat guard and the billing guard so the
 * log lines the runbooks and alerts grep for are spelled once:
 *
 * | guard   | outcome                      | log message                                          |
 * |---------|------------------------------|------------------------------------------------------|
 * | chat    | blocked, not_ready           | `SessionContextGuard: Chat operation blocked`        |
 * | chat    | would_block, allowed_legacy  | `SessionContextGuard: Chat operation allowed (legacy)` |
 * | billing | blocked                      | `SessionContextGuard: Billing blocked`               |
 * | billing | would_block                  | `SessionContextGuard: Billing allowed (would block under enforcement): delegated to session billing` |
 * | billing | allowed_legacy               | `SessionContextGuard: Billing allowed (legacy appointment without session)` |
 */
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { BILLING_ENDPOINTS, CHAT_OPERATIONS, type BillingEndpoint, type ChatOperation } from './decision.js';
import { guardEventFields, type GuardEvent } from './events.js';

/** The log message for a guard decision (see the table above). */
export function guardLogMessage(guard: GuardEvent['guard'], outcome: GuardEvent['outcome']): string {
  if (guard === 'chat') {
    return outcome === 'blocked' || outcome === 'not_ready'
      ? 'SessionContextGuard: Chat operation blocked'
      : 'SessionContextGuard: Chat operation allowed (legacy)';
  }
  if (guard === 'billing') {
    if (outcome === 'blocked' || outcome === 'not_ready') return 'SessionContextGuard: Billing blocked';
    if (outcome === 'would_block') return 'SessionContextGuard: Billing allowed (would block under enforcement): delegated to session billing';
    return 'SessionContextGuard: Billing allowed (legacy appointment without session)';
  }
  return `SessionContextGuard: Legacy trigger ${outcome}`;
}

/**
 * Writes the decision's log line at `warn` (every guard decision on a legacy path is something
 * an operator wants to see during the rollout). Ids go here, never into metric labels.
 */
export function logGuardDecision(log: Logger, e: GuardEvent & { reason?: string; errorCode?: string }): void {
  log.warn(
    {
      ...guardEventFields(e),
      ...(e.reason ? { reason: e.reason } : {}),
      ...(e.errorCode ? { error_code: e.errorCode } : {}),
    },
    guardLogMessage(e.guard, e.outcome),
  );
}

/** Where guard decisions are counted: the registry's `guard` counters (`ops/metrics.ts`). */
export interface GuardCounters {
  guard: {
    chatBlocked: Pick<Counter<'operation' | 'enforced'>, 'inc'>;
    billingBlocked: Pick<Counter<'endpoint' | 'enforced'>, 'inc'>;
  };
}

/**
 * Counts the decision in `chat_blocked_session_context_required_total{operation,enforced}` or
 * `billing_blocked_session_context_required_total{endpoint,enforced}`: `blocked` counts as
 * enforced="true", `would_block` as enforced="false". `not_ready` and `allowed_legacy` are not
 * "session context required" events (there is no session to point to) and are not counted here;
 * they are in the guard-event records.
 */
export function countGuardDecision(metrics: GuardCounters, e: Pick<GuardEvent, 'guard' | 'operation' | 'outcome'>): void {
  if (e.outcome !== 'blocked' && e.outcome !== 'would_block') return;
  const enforced = e.outcome === 'blocked' ? 'true' : 'false';
  if (e.guard === 'chat' && (CHAT_OPERATIONS as readonly string[]).includes(e.operation)) {
    metrics.guard.chatBlocked.inc({ operation: e.operation as ChatOperation, enforced });
  } else if (e.guard === 'billing' && (BILLING_ENDPOINTS as readonly string[]).includes(e.operation)) {
    metrics.guard.billingBlocked.inc({ endpoint: e.operation as BillingEndpoint, enforced });
  }
}
