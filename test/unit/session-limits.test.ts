/**
 * The limits that end running sessions without a client, and the billing cap, as pure
 * functions: table-driven.
 */
import { describe, expect, it } from 'vitest';
import { cappedUnits, legacyAppointmentUnits, unitCap } from '../../src/modules/billing/pricing.js';
import {
  billableUntil,
  limitEnd,
  onLimits,
  onPresence,
  timeLimitAt,
  timeLimitNoticeDue,
  type LimitFacts,
  type SessionLimits,
  type SessionState,
} from '../../src/modules/sessions/state.js';

const T0 = new Date('2026-11-29T10:00:00Z');
const at = (min: number) => new Date(T0.getTime() + min * 60_000);
const L: SessionLimits = { idleMinutes: 15, disconnectGraceSeconds: 60, overrunMinutes: 10 };

const text = (o: Partial<SessionState> = {}): SessionState => ({
  kind: 'text',
  source: 'APPOINTMENT',
  status: 'active',
  created_at: T0,
  activated_at: T0,
  connected_at: null,
  ended_at: null,
  patient_first_message_at: T0,
  doctor_response_deadline: null,
  ringing_since: null,
  patient_in_call: false,
  doctor_in_call: false,
  ...o,
});
const call = (o: Partial<SessionState> = {}): SessionState =>
  text({ kind: 'call', status: 'connected', activated_at: null, connected_at: T0, patient_in_call: true, doctor_in_call: true, ...o });
const facts = (o: Partial<LimitFacts> = {}): LimitFacts => ({
  source: 'APPOINTMENT',
  created_at: T0,
  scheduled_at: T0,
  allowed_minutes: 30,
  last_message_at: null,
  patient_away_since: null,
  doctor_away_since: null,
  ...o,
});

describe('limitEnd: which limit ends a running session, and where', () => {
  it.each([
    ['text, last message 14:59 ago', text(), facts({ last_message_at: at(5) }), at(19.99), null],
    [
      'text, last message 15 min ago → inactive at it',
      text(),
      facts({ last_message_at: at(5) }),
      at(20),
      { at: at(5), reason: 'inactive' },
    ],
    ['text, no message since activation → inactive at activation', text(), facts(), at(15), { at: T0, reason: 'inactive' }],
    [
      'text waiting for the doctor: not a limit (expiry rules)',
      text({ status: 'waiting_for_doctor', activated_at: null }),
      facts(),
      at(600),
      null,
    ],
    [
      'text chatting past booked end + overrun → time_limit',
      text(),
      facts({ last_message_at: at(39) }),
      at(41),
      { at: at(40), reason: 'time_limit' },
    ],
    [
      'text idle and past the limit: the earlier end wins',
      text(),
      facts({ last_message_at: at(3) }),
      at(300),
      { at: at(3), reason: 'inactive' },
    ],
    ['call, one away', call(), facts({ patient_away_since: at(5) }), at(20), null],
    ['call, both away 59 s', call(), facts({ patient_away_since: at(4), doctor_away_since: at(5) }), at(5 + 59 / 60), null],
    [
      'call, both away 60 s → disconnected at the later',
      call(),
      facts({ patient_away_since: at(4), doctor_away_since: at(5) }),
      at(6),
      { at: at(5), reason: 'disconnected' },
    ],
    [
      'call ringing: not a limit',
      call({ status: 'ringing', connected_at: null }),
      facts({ patient_away_since: at(1), doctor_away_since: at(1) }),
      at(100),
      null,
    ],
    ['call connected past the limit', call(), facts(), at(40), { at: at(40), reason: 'time_limit' }],
    [
      'instant call: created + allowed',
      call({ source: 'INSTANT' }),
      facts({ source: 'INSTANT', scheduled_at: null, allowed_minutes: 60 }),
      at(60),
      { at: at(60), reason: 'time_limit' },
    ],
    ['no allowance (older rows): no time limit', call(), facts({ allowed_minutes: null }), at(6000), null],
    ['ended: nothing', text({ status: 'ended', ended_at: at(5) }), facts(), at(600), null],
  ] as const)('%s', (_label, s, f, now, expected) => {
    expect(limitEnd(s, f, now, L)).toEqual(expected);
  });
});

describe('onLimits: the transition', () => {
  it('ends with the reason at the limit instant, never before billable time started', () => {
    const t = onLimits(text(), facts({ last_message_at: at(5) }), at(20), L);
    expect(t).toEqual({
      ok: true,
      change: {
        status: 'ended',
        ended_at: at(5),
        end_reason: 'inactive',
        patient_in_call: false,
        doctor_in_call: false,
        ringing_since: null,
      },
    });
    // A doctor who activated after the booking's limit: the session ends at activation (0 time).
    const late = onLimits(text({ activated_at: at(45) }), facts({ last_message_at: at(45) }), at(46), L);
    expect(late.ok && late.change).toMatchObject({ ended_at: at(45), end_reason: 'time_limit' });
    expect(onLimits(text(), facts({ last_message_at: at(10) }), at(20), L)).toEqual({ ok: true, change: {} });
  });
});

describe('billableUntil: how far the tick may bill a running session', () => {
  it.each([
    ['text: up to its last message', text(), facts({ last_message_at: at(12) }), at(20), at(12)],
    ['text: never past the time limit', text(), facts({ last_message_at: at(45) }), at(50), at(40)],
    ['call: up to now while someone is there', call(), facts({ patient_away_since: at(3) }), at(20), at(20)],
    ['call: up to when both had left', call(), facts({ patient_away_since: at(3), doctor_away_since: at(4) }), at(20), at(4)],
  ] as const)('%s', (_label, s, f, now, expected) => {
    expect(billableUntil(s, f, now, L)).toEqual(expected);
  });
});

describe('time limit and its notice', () => {
  it.each([
    ['booked: scheduled + duration + overrun', facts(), at(40)],
    ['instant: created + allowed', facts({ source: 'INSTANT', scheduled_at: null, allowed_minutes: 60 }), at(60)],
    ['no allowance', facts({ allowed_minutes: null }), null],
  ] as const)('%s', (_label, f, expected) => {
    expect(timeLimitAt(f, L)).toEqual(expected);
  });
  it.each([
    [at(34.99), false],
    [at(35), true],
    [at(39.99), true],
    [at(40), false],
  ])('notice due at %s: %s', (now, due) => {
    expect(timeLimitNoticeDue(facts(), now, L)).toBe(due);
  });
});

describe('onPresence', () => {
  const s = { kind: 'call' as const, status: 'connected' as const, patient_away_since: null, doctor_away_since: null };
  it.each([
    ['away sets the time', s, 'patient', false, { ok: true, change: { patient_away_since: at(1) } }],
    ['away again keeps the first time', { ...s, doctor_away_since: T0 }, 'doctor', false, { ok: true, change: {} }],
    ['back clears it', { ...s, patient_away_since: T0 }, 'patient', true, { ok: true, change: { patient_away_since: null } }],
    ['present while present: no change', s, 'doctor', true, { ok: true, change: {} }],
    [
      'text sessions have no presence',
      { ...s, kind: 'text' as const, status: 'active' as const },
      'patient',
      false,
      { ok: false, reason: 'invalid_for_kind' },
    ],
    ['ended call: nothing', { ...s, status: 'ended' as const }, 'patient', false, { ok: false, reason: 'not_active' }],
  ] as const)('%s', (_label, st, who, present, expected) => {
    expect(onPresence(st, who, present, at(1))).toEqual(expected);
  });
});

describe('the billing cap: one rule for sessions, the tick and the legacy endpoints', () => {
  it.each([
    [null, 50, 50],
    [30, 20, 3],
    [120, 5, 5],
    [30, 3, 3],
    [30, 4, 3],
    [25, 9, 3],
    [60, 7, 6],
    [5, 2, 1],
  ])('allowed %s min: %i units → %i', (allowed, units, expected) => {
    expect(cappedUnits(units, allowed)).toBe(expected);
  });
  it('unitCap and the legacy rule agree', () => {
    expect(unitCap(30)).toBe(3);
    expect(unitCap(null)).toBe(Number.POSITIVE_INFINITY);
    expect(legacyAppointmentUnits({ startedAt: T0, at: at(300), durationMinutes: 30 })).toBe(unitCap(30));
  });
});
