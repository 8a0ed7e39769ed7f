/**
 * Guard-event records: every SessionContextGuard decision on a legacy route is written with its
 * ids (labels on metrics never carry ids), so `rollout:status` can say what turning a flag on
 * would block, and how many distinct appointments that touches.
 *
 * One decision is recorded elsewhere: a legacy send served by the session's chat marks the message
 * it inserts with `legacy_operation` (same statement, no second row; `sendLegacy` in chat).
 * Readers use the view `guard_event_log`, which returns both.
 */
import type { Executor } from '../../db/types.js';

export interface GuardEvent {
  guard: 'chat' | 'billing' | 'legacy_trigger';
  operation: string;
  outcome: 'blocked' | 'would_block' | 'allowed_legacy' | 'not_ready';
  enforced: boolean;
  appointmentId: number | null;
  sessionId: number | null;
  userId: number | null;
}

/** The event as its columns (and its log line's fields): ids by their snake_case names. */
export function guardEventFields(e: GuardEvent) {
  return {
    guard: e.guard,
    operation: e.operation,
    outcome: e.outcome,
    enforced: e.enforced,
    appointment_id: e.appointmentId,
    session_id: e.sessionId,
    user_id: e.userId,
  };
}

export async function recordGuardEvent(db: Executor, e: GuardEvent): Promise<void> {
  await db.insertInto('guard_events').values(guardEventFields(e)).execute();
}
