import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/modules/ops/metrics.js';
import { countGuardDecision, guardLogMessage, logGuardDecision } from '../../src/modules/guard/report.js';

describe('guard reporting (chat and billing log lines and counters)', () => {
  it('spells the log lines the runbooks and alerts look for', () => {
    expect(guardLogMessage('chat', 'blocked')).toBe('SessionContextGuard: Chat operation blocked');
    expect(guardLogMessage('chat', 'not_ready')).toBe('SessionContextGuard: Chat operation blocked');
    expect(guardLogMessage('chat', 'would_block')).toBe('SessionContextGuard: Chat operation allowed (legacy)');
    expect(guardLogMessage('chat', 'allowed_legacy')).toBe('SessionContextGuard: Chat operation allowed (legacy)');
    expect(guardLogMessage('billing', 'blocked')).toContain('SessionContextGuard: Billing blocked');
  });

  it('logs the ids at warn and counts only session-context-required decisions', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    logGuardDecision(log, { guard: 'chat', operation: 'sendMessage', outcome: 'blocked', enforced: true, appointmentId: 4, sessionId: 9, userId: 2 });
    expect(lines[0]).toMatchObject({ level: 40, msg: 'SessionContextGuard: Chat operation blocked', appointment_id: 4, session_id: 9, operation: 'sendMessage', user_id: 2 });

    const m = createMetrics();
    const value = async (enforced: string) =>
      (await m.guard.chatBlocked.get()).values.find((v) => v.labels.operation === 'markAsRead' && v.labels.enforced === enforced)?.value;
    countGuardDecision(m, { guard: 'chat', operation: 'markAsRead', outcome: 'blocked' });
    countGuardDecision(m, { guard: 'chat', operation: 'markAsRead', outcome: 'would_block' });
    countGuardDecision(m, { guard: 'chat', operation: 'markAsRead', outcome: 'not_ready' });
    countGuardDecision(m, { guard: 'chat', operation: 'markAsRead', outcome: 'allowed_legacy' });
    expect(await value('true')).toBe(1);
    expect(await value('false')).toBe(1);
  });
});
