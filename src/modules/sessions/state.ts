/**
 * Session state machines as pure functions: given a session's state, an event and the time,
 * return the columns to change (or a refusal). IO wraps them: the service locks the row, asks
 * here, and writes the answer — so every transition rule is tested without a database.
 *
 * Text:  waiting_for_doctor → active (doctor's first message) → ended
 *        waiting_for_doctor → expired (doctor missed the response window, or nobody wrote
 *        within the join window)
 * Call:  waiting → ringing (one joined) → connected (both joined) → ended
 *        ringing → waiting (appointment) | missed (instant) after the ring timeout or a decline
 *        waiting → expired after the join window
 */
import type { Modality, SessionSource, SessionStatus } from '../../db/types.js';
import type { SessionKind } from './context.js';

export interface SessionTiming {
  responseWindowSeconds: number;
  joinWindowMinutes: number;
  ringTimeoutSeconds: number;
}

export interface SessionState {
  kind: SessionKind;
  source: SessionSource;
  status: SessionStatus;
  created_at: Date;
  activated_at: Date | null;
  connected_at: Date | null;
  ended_at: Date | null;
  patient_first_message_at: Date | null;
  doctor_response_deadline: Date | null;
  ringing_since: Date | null;
  patient_in_call: boolean;
  doctor_in_call: boolean;
  /** Why it ended (optional: only the idempotent decline reads it). */
  end_reason?: string | null;
}

export type SessionChange = Partial<
  Pick<
    SessionState,
    | 'status'
    | 'activated_at'
    | 'connected_at'
    | 'ended_at'
    | 'patient_first_message_at'
    | 'doctor_response_deadline'
    | 'ringing_since'
    | 'patient_in_call'
    | 'doctor_in_call'
  > & { end_reason: string | null }
>;

export type Transition = { ok: true; change: SessionChange } | { ok: false; reason: 'not_active' | 'invalid_for_kind' | 'invalid_state' };

export type Party = 'patient' | 'doctor';

export const LIVE_STATUSES: ReadonlySet<SessionStatus> = new Set(['waiting_for_doctor', 'active', 'waiting', 'ringing', 'connected']);
export const isLive = (s: SessionStatus) => LIVE_STATUSES.has(s);

export const initialStatus = (kind: SessionKind): SessionStatus => (kind === 'text' ? 'waiting_for_doctor' : 'waiting');
export const kindOf = (modality: Modality): SessionKind => (modality === 'text' ? 'text' : 'call');

const ok = (change: SessionChange): Transition => ({ ok: true, change });
const none: Transition = { ok: true, change: {} };
const refuse = (reason: 'not_active' | 'invalid_for_kind' | 'invalid_state'): Transition => ({ ok: false, reason });
const addSeconds = (d: Date, s: number) => new Date(d.getTime() + s * 1000);

/** Whether the passage of time alone ends the session now (a deadline has passed). */
export function endedByTime(s: SessionState, now: Date, t: SessionTiming): boolean {
  const tick = onTick(s, now, t);
  return tick.ok && tick.change.status !== undefined && !isLive(tick.change.status);
}

/**
 * A chat message was sent by `from`. (Calls have chat too, without these rules.)
 * A session whose deadline has passed is over even if no worker has expired it yet: a doctor
 * answering one second after the response window does not activate it (SPEC §2.3).
 */
export function onMessage(s: SessionState, from: Party, now: Date, t: SessionTiming): Transition {
  if (!isLive(s.status)) return refuse('not_active');
  if (endedByTime(s, now, t)) return refuse('not_active');
  if (s.kind !== 'text') return none;
  if (from === 'patient') {
    if (s.status === 'waiting_for_doctor' && s.patient_first_message_at === null) {
      return ok({ patient_first_message_at: now, doctor_response_deadline: addSeconds(now, t.responseWindowSeconds) });
    }
    return none;
  }
  if (s.status === 'waiting_for_doctor') return ok({ status: 'active', activated_at: now, doctor_response_deadline: null });
  return none;
}

/** Either participant ends the session. Ending an ended session is not a change (idempotent). */
export function onEnd(s: SessionState, now: Date, reason: string): Transition {
  if (!isLive(s.status)) return none;
  return ok({ status: 'ended', ended_at: now, end_reason: reason, patient_in_call: false, doctor_in_call: false, ringing_since: null });
}

/** Time passes: expiry of text sessions and calls, ringing timeouts. */
export function onTick(s: SessionState, now: Date, t: SessionTiming): Transition {
  const joinDeadline = addSeconds(s.created_at, t.joinWindowMinutes * 60);
  if (s.kind === 'text') {
    if (s.status !== 'waiting_for_doctor') return none;
    if (s.doctor_response_deadline && now >= s.doctor_response_deadline) {
      return ok({ status: 'expired', ended_at: now, end_reason: 'doctor_no_response' });
    }
    if (s.patient_first_message_at === null && now >= joinDeadline) {
      return ok({ status: 'expired', ended_at: now, end_reason: 'no_show' });
    }
    return none;
  }
  if (s.status === 'ringing' && s.ringing_since && now >= addSeconds(s.ringing_since, t.ringTimeoutSeconds)) {
    if (s.source === 'INSTANT') {
      return ok({
        status: 'missed',
        ended_at: now,
        end_reason: 'no_answer',
        ringing_since: null,
        patient_in_call: false,
        doctor_in_call: false,
      });
    }
    // Back to waiting — unless the join window has closed meanwhile, in which case waiting would
    // expire at once: one step, so a tick is never half-applied (tick ∘ tick = tick).
    if (now >= joinDeadline) {
      return ok({
        status: 'expired',
        ended_at: now,
        end_reason: 'no_answer',
        ringing_since: null,
        patient_in_call: false,
        doctor_in_call: false,
      });
    }
    return ok({ status: 'waiting', ringing_since: null, patient_in_call: false, doctor_in_call: false });
  }
  if (s.status === 'waiting' && now >= joinDeadline) {
    return ok({ status: 'expired', ended_at: now, end_reason: 'no_show' });
  }
  return none;
}

const inCallKey = (p: Party): 'patient_in_call' | 'doctor_in_call' => (p === 'patient' ? 'patient_in_call' : 'doctor_in_call');

export function onJoin(s: SessionState, who: Party, now: Date): Transition {
  if (s.kind !== 'call') return refuse('invalid_for_kind');
  if (!isLive(s.status)) return refuse('not_active');
  const other: Party = who === 'patient' ? 'doctor' : 'patient';
  const otherIn = s[inCallKey(other)];
  if (s[inCallKey(who)]) return none; // already in the call
  if (otherIn) {
    // The second participant joins: connected. connected_at is written once (a reconnect after
    // a drop keeps the first time, which billing runs from).
    return ok({ status: 'connected', [inCallKey(who)]: true, connected_at: s.connected_at ?? now, ringing_since: null });
  }
  if (s.status === 'connected') return ok({ [inCallKey(who)]: true });
  return ok({ status: 'ringing', [inCallKey(who)]: true, ringing_since: now });
}

export function onLeave(s: SessionState, who: Party, now: Date): Transition {
  if (s.kind !== 'call') return refuse('invalid_for_kind');
  if (!isLive(s.status)) return none;
  if (!s[inCallKey(who)]) return none;
  if (s.status === 'connected') return onEnd(s, now, `${who}_hung_up`);
  // Ringing and the caller gives up.
  if (s.source === 'INSTANT') {
    return ok({
      status: 'ended',
      ended_at: now,
      end_reason: 'caller_cancelled',
      ringing_since: null,
      patient_in_call: false,
      doctor_in_call: false,
    });
  }
  return ok({ status: 'waiting', ringing_since: null, [inCallKey(who)]: false });
}

/** The callee declines a ringing call. Declining a call that was already declined is not a change. */
export function onDecline(s: SessionState, who: Party, now: Date): Transition {
  if (s.kind !== 'call') return refuse('invalid_for_kind');
  if (!isLive(s.status)) return s.end_reason === 'declined' ? none : refuse('not_active');
  if (s.status !== 'ringing' || s[inCallKey(who)]) return refuse('invalid_state');
  if (s.source === 'INSTANT') {
    return ok({
      status: 'ended',
      ended_at: now,
      end_reason: 'declined',
      ringing_since: null,
      patient_in_call: false,
      doctor_in_call: false,
    });
  }
  return ok({ status: 'waiting', ringing_since: null, patient_in_call: false, doctor_in_call: false });
}

/**
 * A participant hangs up without saying how (the original app's one "end call" request serves
 * hang-up, cancel and decline alike): a connected call ends (and is billed); a caller still
 * ringing cancels (onLeave); a callee who has not joined declines a ringing call (onDecline); an
 * instant call nobody is in ends; a booked call nobody is in stays waiting for a retry.
 */
export function onHangUp(s: SessionState, who: Party, now: Date): Transition {
  if (s.kind !== 'call') return refuse('invalid_for_kind');
  if (!isLive(s.status)) return none;
  if (s.status === 'connected') return onEnd(s, now, `${who}_hung_up`);
  if (s.status === 'ringing') return s[inCallKey(who)] ? onLeave(s, who, now) : onDecline(s, who, now);
  if (s.source === 'INSTANT') return onEnd(s, now, 'caller_cancelled');
  return none;
}

/** Whether a consultation actually happened (the appointment is completed, not missed). */
export function consultationHappened(s: Pick<SessionState, 'activated_at' | 'connected_at'>): boolean {
  return s.activated_at !== null || s.connected_at !== null;
}
