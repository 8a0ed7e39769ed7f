/**
 * The cross-process revocation signal: when a user is deactivated, deleted or changes role, every
 * API process closes that user's sockets. It travels on the event bus like any event (PostgreSQL
 * NOTIFY with several processes) but is never sent to a client: gateways consume it
 * (`revokedUserIds`). The periodic re-check in `socket-access.ts` is the backstop for changes
 * made without the signal (a row deleted in SQL, a notification lost while the bus reconnected).
 */
import type { BusEvent, EventBus } from './bus.js';

export const USER_REVOKED = 'user.revoked';

export type RevocationReason = 'deactivated' | 'deleted' | 'role_changed' | 'token_revoked';

/** Publishes the signal; resolves once it left this process (sent, for the PostgreSQL bus). */
export async function publishUserRevoked(bus: EventBus, userId: number, reason: RevocationReason): Promise<void> {
  await bus.publish({ type: USER_REVOKED, userIds: [userId], payload: { user_id: userId, reason } });
}

/** The users a bus event revokes, or null when it is not a revocation. */
export function revokedUserIds(e: BusEvent): number[] | null {
  return e.type === USER_REVOKED ? (e.userIds ?? []) : null;
}
