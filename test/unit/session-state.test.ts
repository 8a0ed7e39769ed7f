/**
 * The session state machines (src/modules/sessions/state.ts), table-driven: every transition
 * and every refusal of onMessage, onEnd, onTick, onJoin, onLeave and onDecline, for text and
 * call sessions, appointment and instant. Pure functions: no database, an injected clock.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { SessionStatus } from '../../src/db/types.js';
import {
  consultationHappened,
  endedByTime,
  initialStatus,
  isLive,
  kindOf,
  onDecline,
  onEnd,
  onHangUp,
  onJoin,
  onLeave,
  onMessage,
  onTick,
  type SessionChange,
  type SessionState,
  type SessionTiming,
  type Transition,
} from '../../src/modules/sessions/state.js';

const T: SessionTiming = { responseWindowSeconds: 300, joinWindowMinutes: 60, ringTimeoutSeconds: 90 };
const T0 = new Date('2026-03-01T10:00:00.000Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

function text(over: Partial<SessionState> = {}): SessionState {
  return {
    kind: 'text',
    source: 'APPOINTMENT',
    status: 'waiting_for_doctor',
    created_at: T0,
    activated_at: null,
    connected_at: null,
    ended_at: null,
    patient_first_message_at: null,
    doctor_response_deadline: null,
    ringing_since: null,
    patient_in_call: false,
    doctor_in_call: false,
    end_reason: null,
    ...over,
  };
}
const call = (over: Partial<SessionState> = {}) => text({ kind: 'call', status: 'waiting', ...over });
const ended = (over: Partial<SessionState> = {}) => ({ ended_at: at(10), ...over });

const NONE: Transition = { ok: true, change: {} };
const change = (c: SessionChange): Transition => ({ ok: true, change: c });
const refused = (reason: 'not_active' | 'invalid_for_kind' | 'invalid_state'): Transition => ({ ok: false, reason });

/** Applies a transition's change to a state (what writeChange does to the row). */
function apply(s: SessionState, t: Transition): SessionState {
  if (!t.ok) throw new Error(`refused: ${t.reason}`);
  return { ...s, ...t.change };
}

describe('basics', () => {
  it.each([
    ['text', 'text', 'waiting_for_doctor'],
    ['voice', 'call', 'waiting'],
    ['video', 'call', 'waiting'],
  ] as const)('%s sessions are %s sessions starting %s', (modality, kind, status) => {
    expect(kindOf(modality)).toBe(kind);
    expect(initialStatus(kind)).toBe(status);
  });

  it.each<[SessionStatus, boolean]>([
    ['waiting_for_doctor', true],
    ['active', true],
    ['waiting', true],
    ['ringing', true],
    ['connected', true],
    ['ended', false],
    ['expired', false],
    ['missed', false],
  ])('%s is live: %s', (status, live) => expect(isLive(status)).toBe(live));

  it.each([
    [{ activated_at: null, connected_at: null }, false],
    [{ activated_at: T0, connected_at: null }, true],
    [{ activated_at: null, connected_at: T0 }, true],
  ])('a consultation happened (%o): %s', (s, expected) => expect(consultationHappened(s)).toBe(expected));
});

describe('onMessage (text sessions)', () => {
  const deadline = at(60 + 300);
  it.each<[string, SessionState, 'patient' | 'doctor', Date, Transition]>([
    [
      "the patient's first message starts the doctor's response window",
      text(),
      'patient',
      at(60),
      change({ patient_first_message_at: at(60), doctor_response_deadline: deadline }),
    ],
    [
      'a second patient message does not move the window',
      text({ patient_first_message_at: at(60), doctor_response_deadline: deadline }),
      'patient',
      at(120),
      NONE,
    ],
    [
      "the doctor's first message activates the session before the deadline",
      text({ patient_first_message_at: at(60), doctor_response_deadline: deadline }),
      'doctor',
      at(359),
      change({ status: 'active', activated_at: at(359), doctor_response_deadline: null }),
    ],
    [
      'the doctor may write first (before the patient): it activates',
      text(),
      'doctor',
      at(30),
      change({ status: 'active', activated_at: at(30), doctor_response_deadline: null }),
    ],
    [
      'a doctor message at the deadline is refused (the window has closed)',
      text({ patient_first_message_at: at(60), doctor_response_deadline: deadline }),
      'doctor',
      deadline,
      refused('not_active'),
    ],
    [
      'a patient message after the response window is refused too',
      text({ patient_first_message_at: at(60), doctor_response_deadline: deadline }),
      'patient',
      at(400),
      refused('not_active'),
    ],
    ['nobody wrote within the join window: refused', text(), 'patient', at(3600), refused('not_active')],
    ['messages in an active session change nothing (patient)', text({ status: 'active', activated_at: at(30) }), 'patient', at(4000), NONE],
    ['messages in an active session change nothing (doctor)', text({ status: 'active', activated_at: at(30) }), 'doctor', at(4000), NONE],
    ['ended sessions refuse messages', text({ status: 'ended', ...ended() }), 'patient', at(20), refused('not_active')],
    ['expired sessions refuse messages', text({ status: 'expired', ...ended() }), 'doctor', at(20), refused('not_active')],
  ])('%s', (_name, s, from, now, expected) => {
    expect(onMessage(s, from, now, T)).toEqual(expected);
  });
});

describe('onMessage (call sessions: chat without activation rules)', () => {
  it.each<[string, SessionState, Date, Transition]>([
    ['waiting call', call(), at(10), NONE],
    ['ringing call', call({ status: 'ringing', patient_in_call: true, ringing_since: at(5) }), at(10), NONE],
    ['connected call', call({ status: 'connected', patient_in_call: true, doctor_in_call: true, connected_at: at(5) }), at(5000), NONE],
    ['a waiting call past the join window is over', call(), at(3600), refused('not_active')],
    ['ended call', call({ status: 'ended', ...ended() }), at(20), refused('not_active')],
    ['missed call', call({ status: 'missed', source: 'INSTANT', ...ended() }), at(20), refused('not_active')],
  ])('%s', (_name, s, now, expected) => {
    expect(onMessage(s, 'patient', now, T)).toEqual(expected);
  });
});

describe('onEnd', () => {
  const endChange = (reason: string, now: Date) =>
    change({ status: 'ended', ended_at: now, end_reason: reason, patient_in_call: false, doctor_in_call: false, ringing_since: null });
  it.each<[string, SessionState, Transition]>([
    ['waiting text session', text(), endChange('ended_by_patient', at(100))],
    ['active text session', text({ status: 'active', activated_at: at(5) }), endChange('ended_by_patient', at(100))],
    ['waiting call', call(), endChange('ended_by_patient', at(100))],
    ['ringing call', call({ status: 'ringing', doctor_in_call: true, ringing_since: at(50) }), endChange('ended_by_patient', at(100))],
    [
      'connected call',
      call({ status: 'connected', patient_in_call: true, doctor_in_call: true, connected_at: at(5) }),
      endChange('ended_by_patient', at(100)),
    ],
    ['ended: idempotent, no change', text({ status: 'ended', ...ended() }), NONE],
    ['expired: no change', text({ status: 'expired', ...ended() }), NONE],
    ['missed: no change', call({ status: 'missed', source: 'INSTANT', ...ended() }), NONE],
  ])('%s', (_name, s, expected) => {
    expect(onEnd(s, at(100), 'ended_by_patient')).toEqual(expected);
  });
});

describe('onTick', () => {
  const expire = (now: Date, reason: string) => change({ status: 'expired', ended_at: now, end_reason: reason });
  const ringing = (over: Partial<SessionState> = {}) => call({ status: 'ringing', patient_in_call: true, ringing_since: at(100), ...over });
  const cleared = { ringing_since: null, patient_in_call: false, doctor_in_call: false };
  it.each<[string, SessionState, Date, Transition]>([
    // text
    ['text: waiting, within the join window', text(), at(3599), NONE],
    ['text: nobody wrote within the join window → expired (no_show)', text(), at(3600), expire(at(3600), 'no_show')],
    [
      'text: response window running → nothing yet',
      text({ patient_first_message_at: at(60), doctor_response_deadline: at(360) }),
      at(359),
      NONE,
    ],
    [
      'text: response window passed → expired (doctor_no_response)',
      text({ patient_first_message_at: at(60), doctor_response_deadline: at(360) }),
      at(360),
      expire(at(360), 'doctor_no_response'),
    ],
    [
      'text: the patient wrote, so the join window no longer applies (the response window does)',
      text({ patient_first_message_at: at(3500), doctor_response_deadline: at(3800) }),
      at(3700),
      NONE,
    ],
    ['text: active sessions do not time out here (billing ends them)', text({ status: 'active', activated_at: at(5) }), at(99_999), NONE],
    ['text: ended is final', text({ status: 'ended', ...ended() }), at(99_999), NONE],
    ['text: expired is final', text({ status: 'expired', ...ended() }), at(99_999), NONE],
    // call
    ['call: waiting within the join window', call(), at(3599), NONE],
    ['call: waiting past the join window → expired (no_show)', call(), at(3600), expire(at(3600), 'no_show')],
    ['call: ringing within the ring timeout', ringing(), at(189), NONE],
    ['call (appointment): ring timeout → back to waiting', ringing(), at(190), change({ status: 'waiting', ...cleared })],
    [
      'call (appointment): ring timeout after the join window closed → expired in one step',
      ringing({ ringing_since: at(3550) }),
      at(3640),
      change({ status: 'expired', ended_at: at(3640), end_reason: 'no_answer', ...cleared }),
    ],
    [
      'call (instant): ring timeout → missed',
      ringing({ source: 'INSTANT' }),
      at(190),
      change({ status: 'missed', ended_at: at(190), end_reason: 'no_answer', ...cleared }),
    ],
    ['call: ringing past the join window but not the ring timeout → still ringing', ringing({ ringing_since: at(3590) }), at(3600), NONE],
    [
      'call: connected calls do not time out here',
      call({ status: 'connected', patient_in_call: true, doctor_in_call: true, connected_at: at(5) }),
      at(99_999),
      NONE,
    ],
    ['call: ended is final', call({ status: 'ended', ...ended() }), at(99_999), NONE],
    ['call: missed is final', call({ status: 'missed', source: 'INSTANT', ...ended() }), at(99_999), NONE],
    ['call: expired is final', call({ status: 'expired', ...ended() }), at(99_999), NONE],
  ])('%s', (_name, s, now, expected) => {
    expect(onTick(s, now, T)).toEqual(expected);
  });

  it('never refuses, and applying a tick twice equals applying it once', () => {
    const statuses: SessionStatus[] = ['waiting_for_doctor', 'active', 'ended', 'expired', 'waiting', 'ringing', 'connected', 'missed'];
    const arb = fc.record({
      kind: fc.constantFrom('text' as const, 'call' as const),
      source: fc.constantFrom('APPOINTMENT' as const, 'INSTANT' as const),
      status: fc.constantFrom(...statuses),
      firstMessage: fc.option(fc.integer({ min: 0, max: 7200 })),
      ringingSince: fc.option(fc.integer({ min: 0, max: 7200 })),
      now: fc.integer({ min: 0, max: 10_000 }),
    });
    fc.assert(
      fc.property(arb, (a) => {
        const s = text({
          kind: a.kind,
          source: a.source,
          status: a.status,
          patient_first_message_at: a.firstMessage === null ? null : at(a.firstMessage),
          doctor_response_deadline: a.firstMessage === null ? null : at(a.firstMessage + T.responseWindowSeconds),
          ringing_since: a.ringingSince === null ? null : at(a.ringingSince),
        });
        const once = onTick(s, at(a.now), T);
        expect(once.ok).toBe(true);
        const twice = onTick(apply(s, once), at(a.now), T);
        expect(twice).toEqual(NONE);
        // endedByTime agrees with the tick.
        const after = apply(s, once);
        expect(endedByTime(s, at(a.now), T)).toBe(isLive(s.status) && !isLive(after.status));
      }),
    );
  });
});

describe('onJoin', () => {
  it.each<[string, SessionState, 'patient' | 'doctor', Transition]>([
    [
      'the first participant joins → ringing',
      call(),
      'patient',
      change({ status: 'ringing', patient_in_call: true, ringing_since: at(50) }),
    ],
    ['the doctor may join first → ringing', call(), 'doctor', change({ status: 'ringing', doctor_in_call: true, ringing_since: at(50) })],
    [
      'the second participant joins → connected, connected_at set',
      call({ status: 'ringing', patient_in_call: true, ringing_since: at(40) }),
      'doctor',
      change({ status: 'connected', doctor_in_call: true, connected_at: at(50), ringing_since: null }),
    ],
    [
      'connected_at is written once (kept on a reconnect)',
      call({ status: 'connected', patient_in_call: true, doctor_in_call: false, connected_at: at(5) }),
      'doctor',
      change({ status: 'connected', doctor_in_call: true, connected_at: at(5), ringing_since: null }),
    ],
    [
      'joining again while in the call is no change',
      call({ status: 'ringing', patient_in_call: true, ringing_since: at(40) }),
      'patient',
      NONE,
    ],
    ['text sessions have no call', text(), 'patient', refused('invalid_for_kind')],
    ['ended calls refuse joins', call({ status: 'ended', ...ended() }), 'patient', refused('not_active')],
    ['expired calls refuse joins', call({ status: 'expired', ...ended() }), 'doctor', refused('not_active')],
    ['missed calls refuse joins', call({ status: 'missed', source: 'INSTANT', ...ended() }), 'doctor', refused('not_active')],
  ])('%s', (_name, s, who, expected) => {
    expect(onJoin(s, who, at(50))).toEqual(expected);
  });
});

describe('onLeave', () => {
  it.each<[string, SessionState, 'patient' | 'doctor', Transition]>([
    [
      'hanging up a connected call ends it',
      call({ status: 'connected', patient_in_call: true, doctor_in_call: true, connected_at: at(5) }),
      'doctor',
      change({
        status: 'ended',
        ended_at: at(50),
        end_reason: 'doctor_hung_up',
        patient_in_call: false,
        doctor_in_call: false,
        ringing_since: null,
      }),
    ],
    [
      'the caller gives up ringing (appointment) → back to waiting',
      call({ status: 'ringing', patient_in_call: true, ringing_since: at(40) }),
      'patient',
      change({ status: 'waiting', ringing_since: null, patient_in_call: false }),
    ],
    [
      'the caller gives up ringing (instant) → ended caller_cancelled',
      call({ status: 'ringing', source: 'INSTANT', patient_in_call: true, ringing_since: at(40) }),
      'patient',
      change({
        status: 'ended',
        ended_at: at(50),
        end_reason: 'caller_cancelled',
        ringing_since: null,
        patient_in_call: false,
        doctor_in_call: false,
      }),
    ],
    [
      'leaving a call one is not in is no change',
      call({ status: 'ringing', patient_in_call: true, ringing_since: at(40) }),
      'doctor',
      NONE,
    ],
    ['leaving a waiting call is no change', call(), 'patient', NONE],
    ['leaving an ended call is no change (idempotent)', call({ status: 'ended', ...ended() }), 'patient', NONE],
    ['text sessions have no call', text(), 'patient', refused('invalid_for_kind')],
  ])('%s', (_name, s, who, expected) => {
    expect(onLeave(s, who, at(50))).toEqual(expected);
  });
});

describe('onDecline', () => {
  const ringingFromPatient = (over: Partial<SessionState> = {}) =>
    call({ status: 'ringing', patient_in_call: true, ringing_since: at(40), ...over });
  it.each<[string, SessionState, 'patient' | 'doctor', Transition]>([
    [
      'the doctor declines an appointment call → back to waiting',
      ringingFromPatient(),
      'doctor',
      change({ status: 'waiting', ringing_since: null, patient_in_call: false, doctor_in_call: false }),
    ],
    [
      'the doctor declines an instant call → ended (declined)',
      ringingFromPatient({ source: 'INSTANT' }),
      'doctor',
      change({
        status: 'ended',
        ended_at: at(50),
        end_reason: 'declined',
        ringing_since: null,
        patient_in_call: false,
        doctor_in_call: false,
      }),
    ],
    ['the caller cannot decline their own call', ringingFromPatient(), 'patient', refused('invalid_state')],
    ['nothing to decline while waiting', call(), 'doctor', refused('invalid_state')],
    [
      'nothing to decline once connected',
      call({ status: 'connected', patient_in_call: true, doctor_in_call: true, connected_at: at(5) }),
      'doctor',
      refused('invalid_state'),
    ],
    [
      'declining a declined call again is no change (idempotent)',
      call({ status: 'ended', source: 'INSTANT', end_reason: 'declined', ...ended() }),
      'doctor',
      NONE,
    ],
    [
      'declining a call that ended otherwise is refused',
      call({ status: 'ended', end_reason: 'patient_hung_up', ...ended() }),
      'doctor',
      refused('not_active'),
    ],
    ['text sessions have no call', text(), 'doctor', refused('invalid_for_kind')],
  ])('%s', (_name, s, who, expected) => {
    expect(onDecline(s, who, at(50))).toEqual(expected);
  });
});

describe('onHangUp (one "end call" for hang-up, cancel and decline)', () => {
  const ringing = (over: Partial<SessionState> = {}) => call({ status: 'ringing', patient_in_call: true, ringing_since: at(40), ...over });
  const connected = call({ status: 'connected', patient_in_call: true, doctor_in_call: true, connected_at: at(5) });
  it.each<[string, SessionState, 'patient' | 'doctor', Transition]>([
    ['a connected call ends, whoever hangs up', connected, 'doctor', onEnd(connected, at(50), 'doctor_hung_up')],
    [
      'the ringing caller cancels (as onLeave)',
      ringing({ source: 'INSTANT' }),
      'patient',
      onLeave(ringing({ source: 'INSTANT' }), 'patient', at(50)),
    ],
    ['the callee of a ringing call declines (as onDecline)', ringing(), 'doctor', onDecline(ringing(), 'doctor', at(50))],
    [
      'an instant call nobody is in ends',
      call({ source: 'INSTANT' }),
      'patient',
      change({
        status: 'ended',
        ended_at: at(50),
        end_reason: 'caller_cancelled',
        patient_in_call: false,
        doctor_in_call: false,
        ringing_since: null,
      }),
    ],
    ['a booked call nobody is in stays waiting for a retry', call(), 'patient', NONE],
    ['an ended call: no change (idempotent)', call({ status: 'ended', ...ended() }), 'doctor', NONE],
    ['text sessions have no call', text(), 'doctor', refused('invalid_for_kind')],
  ])('%s', (_name, s, who, expected) => {
    expect(onHangUp(s, who, at(50))).toEqual(expected);
  });
});

describe('whole journeys', () => {
  it('text: patient writes, doctor answers, patient ends — the consultation happened', () => {
    let s = text();
    s = apply(s, onMessage(s, 'patient', at(60), T));
    s = apply(s, onMessage(s, 'doctor', at(120), T));
    expect(s.status).toBe('active');
    s = apply(s, onTick(s, at(99_999), T));
    expect(s.status).toBe('active');
    s = apply(s, onEnd(s, at(900), 'ended_by_patient'));
    expect(s).toMatchObject({ status: 'ended', activated_at: at(120), ended_at: at(900) });
    expect(consultationHappened(s)).toBe(true);
  });

  it('call: ring, time out, ring again, connect, hang up', () => {
    let s = call();
    s = apply(s, onJoin(s, 'patient', at(10)));
    s = apply(s, onTick(s, at(100), T));
    expect(s.status).toBe('waiting');
    s = apply(s, onJoin(s, 'doctor', at(200)));
    s = apply(s, onJoin(s, 'patient', at(210)));
    expect(s).toMatchObject({ status: 'connected', connected_at: at(210) });
    s = apply(s, onLeave(s, 'patient', at(900)));
    expect(s).toMatchObject({ status: 'ended', end_reason: 'patient_hung_up' });
    expect(consultationHappened(s)).toBe(true);
  });
});
