/**
 * SessionContextGuard decisions for the legacy, appointment-addressed routes.
 *
 * Pure: the caller has already authenticated, checked participation and loaded
 * `appointment.session_id`; these functions only turn that plus the flags into an action. The IO
 * wrapper logs, counts metrics, records guard events and maps blocks to HTTP errors.
 *
 * "wouldBlock" marks requests that are allowed only because enforcement is off; they are what
 * `rollout:status` counts to tell whether turning the flag on is safe.
 */

/** The eight legacy chat operations the guard covers, named as the original backend's methods. */
export const CHAT_OPERATIONS = [
  'sendMessage',
  'getMessages',
  'addReaction',
  'removeReaction',
  'startTyping',
  'stopTyping',
  'replyToMessage',
  'markAsRead',
] as const;

/** One of {@link CHAT_OPERATIONS}; used as a metric label, so the set must stay closed. */
export type ChatOperation = (typeof CHAT_OPERATIONS)[number];

/** The three legacy billing endpoints the guard covers (metric label `endpoint`). */
export const BILLING_ENDPOINTS = ['end-session', 'process-payment', 'process-deduction'] as const;

/** One of {@link BILLING_ENDPOINTS}. */
export type BillingEndpoint = (typeof BILLING_ENDPOINTS)[number];

/** What to do with a legacy chat request addressed by appointment id. */
export type ChatDecision =
  | { action: 'block'; errorCode: 'SESSION_CONTEXT_REQUIRED'; status: 400 }
  | { action: 'block'; errorCode: 'SESSION_NOT_READY'; status: 403 }
  | { action: 'serve_session'; wouldBlock: true }
  | { action: 'serve_legacy' };

/** What to do with a legacy billing request addressed by appointment id. */
export type BillingDecision =
  | { action: 'block'; errorCode: 'SESSION_BILLING_REQUIRED'; status: 400 }
  | { action: 'delegate_session'; wouldBlock: true }
  | { action: 'legacy' };

/**
 * Chat guard:
 *
 * | session_id | enforceChat | allowLegacyChat | decision                              |
 * |------------|-------------|-----------------|---------------------------------------|
 * | set        | true        | any             | block 400 SESSION_CONTEXT_REQUIRED    |
 * | set        | false       | any             | serve_session (would-block)           |
 * | null       | any         | false           | block 403 SESSION_NOT_READY           |
 * | null       | any         | true            | serve_legacy (pre-session chat)       |
 */
export function decideLegacyChat(input: {
  sessionId: number | null;
  enforceChat: boolean;
  allowLegacyChat: boolean;
}): ChatDecision {
  if (input.sessionId !== null) {
    // The session owns the chat now; without enforcement we still route to it, so the
    // appointment never grows a second, divergent history.
    return input.enforceChat
      ? { action: 'block', errorCode: 'SESSION_CONTEXT_REQUIRED', status: 400 }
      : { action: 'serve_session', wouldBlock: true };
  }
  // No session yet: ENFORCE_SESSION_GATED_CHAT is irrelevant here (there is nothing to redirect
  // to); only the compatibility flag decides whether pre-session chat is kept.
  return input.allowLegacyChat
    ? { action: 'serve_legacy' }
    : { action: 'block', errorCode: 'SESSION_NOT_READY', status: 403 };
}

/**
 * Billing guard:
 *
 * | session_id | enforceBilling | decision                                   |
 * |------------|----------------|--------------------------------------------|
 * | set        | true           | block 400 SESSION_BILLING_REQUIRED         |
 * | set        | false          | delegate_session (would-block)             |
 * | null       | any            | legacy (appointment billing via the ledger)|
 */
export function decideLegacyBilling(input: { sessionId: number | null; enforceBilling: boolean }): BillingDecision {
  if (input.sessionId !== null) {
    // Delegating (not charging the appointment) is what prevents a second, appointment-based
    // charge for time the session already bills.
    return input.enforceBilling
      ? { action: 'block', errorCode: 'SESSION_BILLING_REQUIRED', status: 400 }
      : { action: 'delegate_session', wouldBlock: true };
  }
  return { action: 'legacy' };
}
