import { describe, it, expect } from 'vitest';
import {
  BILLING_ENDPOINTS,
  CHAT_OPERATIONS,
  decideLegacyBilling,
  decideLegacyChat,
  type BillingDecision,
  type ChatDecision,
} from '../../src/modules/guard/decision.js';

const CONTEXT_REQUIRED: ChatDecision = { action: 'block', errorCode: 'SESSION_CONTEXT_REQUIRED', status: 400 };
const NOT_READY: ChatDecision = { action: 'block', errorCode: 'SESSION_NOT_READY', status: 403 };
const SERVE_SESSION: ChatDecision = { action: 'serve_session', wouldBlock: true };
const SERVE_LEGACY: ChatDecision = { action: 'serve_legacy' };

describe('decideLegacyChat', () => {
  // All 8 combinations of (session_id set?, ENFORCE_SESSION_GATED_CHAT, ALLOW_LEGACY_APPOINTMENT_CHAT).
  it.each<[number | null, boolean, boolean, ChatDecision]>([
    [42, true, false, CONTEXT_REQUIRED],
    [42, true, true, CONTEXT_REQUIRED],
    [42, false, false, SERVE_SESSION],
    [42, false, true, SERVE_SESSION],
    [null, false, false, NOT_READY],
    [null, true, false, NOT_READY],
    [null, false, true, SERVE_LEGACY],
    [null, true, true, SERVE_LEGACY],
  ])('session_id=%j enforce=%j allowLegacy=%j → %j', (sessionId, enforceChat, allowLegacyChat, expected) => {
    expect(decideLegacyChat({ sessionId, enforceChat, allowLegacyChat })).toEqual(expected);
  });
});

describe('decideLegacyBilling', () => {
  it.each<[number | null, boolean, BillingDecision]>([
    [7, true, { action: 'block', errorCode: 'SESSION_BILLING_REQUIRED', status: 400 }],
    [7, false, { action: 'delegate_session', wouldBlock: true }],
    [null, true, { action: 'legacy' }],
    [null, false, { action: 'legacy' }],
  ])('session_id=%j enforce=%j → %j', (sessionId, enforceBilling, expected) => {
    expect(decideLegacyBilling({ sessionId, enforceBilling })).toEqual(expected);
  });
});

describe('guarded names', () => {
  it('covers the eight legacy chat operations', () => {
    expect([...CHAT_OPERATIONS].sort()).toEqual(
      [
        'addReaction',
        'getMessages',
        'markAsRead',
        'removeReaction',
        'replyToMessage',
        'sendMessage',
        'startTyping',
        'stopTyping',
      ].sort(),
    );
  });

  it('covers the three billing endpoints', () => {
    expect(BILLING_ENDPOINTS).toEqual(['end-session', 'process-payment', 'process-deduction']);
  });
});
