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
import type { SessionKind } from '../session-context.js';

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
  > & { end_reason: string | null; patient_away_since: Date | null; doctor_away_since: Date | null }
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
 * answering one second after the response window does not activate it.
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

/**
 * Ending without a client: the limits the worker applies to running sessions.
 *
 * - `inactive`     an `active` text session with no message for `idleMinutes`: ended at its last
 *                  message (billed up to it);
 * - `disconnected` a `connected` call whose participants have both been away from the WebSocket
 *                  for `disconnectGraceSeconds`: ended when the last one left;
 * - `time_limit`   a booked session at `scheduled_at + allowed_minutes + overrunMinutes`, an
 *                  instant one at `created_at + allowed_minutes`: ended at that instant.
 * When several apply, the earliest end wins: a chat that went quiet at 10:05 ended at 10:05
 * even if its booking also ran out at 10:40.
 */
export interface SessionLimits {
  idleMinutes: number;
  disconnectGraceSeconds: number;
  overrunMinutes: number;
}

/** Facts about a running session that the limits read besides its row. */
export interface LimitFacts {
  source: SessionSource;
  created_at: Date;
  /** The appointment's time (booked sessions). */
  scheduled_at: Date | null;
  allowed_minutes: number | null;
  /** The newest message of the session (text: activation is the doctor's first message). */
  last_message_at: Date | null;
  patient_away_since: Date | null;
  doctor_away_since: Date | null;
}

/** A booked session may run this long before its time limit to be told it is ending. */
export const TIME_LIMIT_NOTICE_SECONDS = 300;

/** When the session reaches its time limit; null when it has none (sessions older than the allowance). */
export function timeLimitAt(
  f: Pick<LimitFacts, 'source' | 'created_at' | 'scheduled_at' | 'allowed_minutes'>,
  l: Pick<SessionLimits, 'overrunMinutes'>,
): Date | null {
  if (f.allowed_minutes === null) return null;
  if (f.source === 'APPOINTMENT') {
    return f.scheduled_at === null ? null : addSeconds(f.scheduled_at, (f.allowed_minutes + l.overrunMinutes) * 60);
  }
  return addSeconds(f.created_at, f.allowed_minutes * 60);
}

/** When both participants were gone from the call: the later of the two departures; null while either is present. */
export function bothAwaySince(f: Pick<LimitFacts, 'patient_away_since' | 'doctor_away_since'>): Date | null {
  if (f.patient_away_since === null || f.doctor_away_since === null) return null;
  return f.patient_away_since > f.doctor_away_since ? f.patient_away_since : f.doctor_away_since;
}

/** The end a limit imposes on a running session at `now`, or null when none has been reached. */
export function limitEnd(
  s: Pick<SessionState, 'kind' | 'status' | 'activated_at'>,
  f: LimitFacts,
  now: Date,
  l: SessionLimits,
): { at: Date; reason: 'inactive' | 'disconnected' | 'time_limit' } | null {
  const candidates: { at: Date; reason: 'inactive' | 'disconnected' | 'time_limit' }[] = [];
  if (s.kind === 'text' && s.status === 'active') {
    const last = f.last_message_at ?? s.activated_at;
    if (last !== null && now >= addSeconds(last, l.idleMinutes * 60)) candidates.push({ at: last, reason: 'inactive' });
  }
  if (s.kind === 'call' && s.status === 'connected') {
    const away = bothAwaySince(f);
    if (away !== null && now >= addSeconds(away, l.disconnectGraceSeconds)) candidates.push({ at: away, reason: 'disconnected' });
  }
  if ((s.kind === 'text' && s.status === 'active') || (s.kind === 'call' && s.status === 'connected')) {
    const limit = timeLimitAt(f, l);
    if (limit !== null && now >= limit) candidates.push({ at: limit, reason: 'time_limit' });
  }
  if (candidates.length === 0) return null;
  return candidates.reduce((a, b) => (b.at < a.at ? b : a));
}

/** Time passes for a running session: ends it when a limit has been reached (see {@link limitEnd}). */
export function onLimits(s: SessionState, f: LimitFacts, now: Date, l: SessionLimits): Transition {
  const end = limitEnd(s, f, now, l);
  if (end === null) return none;
  // Never before billable time started: a limit that passed before activation ends it there.
  const start = s.kind === 'text' ? s.activated_at : s.connected_at;
  const at = start !== null && end.at < start ? start : end.at;
  return ok({ status: 'ended', ended_at: at, end_reason: end.reason, patient_in_call: false, doctor_in_call: false, ringing_since: null });
}

/**
 * The latest instant a running session is billable up to by `now`, for the periodic tick: a
 * text session up to its last message (it may end `inactive` there), a call up to when both
 * left (it may end `disconnected` there), and never past its time limit.
 */
export function billableUntil(s: Pick<SessionState, 'kind' | 'activated_at'>, f: LimitFacts, now: Date, l: SessionLimits): Date {
  let until = now;
  if (s.kind === 'text') {
    const last = f.last_message_at ?? s.activated_at;
    if (last !== null && last < until) until = last;
  } else {
    const away = bothAwaySince(f);
    if (away !== null && away < until) until = away;
  }
  const limit = timeLimitAt(f, l);
  if (limit !== null && limit < until) until = limit;
  return until;
}

/** Whether the "session ending" notice is due: within {@link TIME_LIMIT_NOTICE_SECONDS} of the time limit. */
export function timeLimitNoticeDue(f: LimitFacts, now: Date, l: SessionLimits): boolean {
  const limit = timeLimitAt(f, l);
  return limit !== null && now >= addSeconds(limit, -TIME_LIMIT_NOTICE_SECONDS) && now < limit;
}

/**
 * A participant's WebSocket presence in a call changed. Present clears `away_since`; away sets
 * it once (the first departure counts: a second connection closing later does not move it).
 * Only calls track presence; ended calls are not changed.
 */
export function onPresence(
  s: Pick<SessionState, 'kind' | 'status'> & Pick<LimitFacts, 'patient_away_since' | 'doctor_away_since'>,
  who: Party,
  present: boolean,
  at: Date,
):
  | { ok: true; change: { patient_away_since?: Date | null; doctor_away_since?: Date | null } }
  | { ok: false; reason: 'invalid_for_kind' | 'not_active' } {
  if (s.kind !== 'call') return { ok: false, reason: 'invalid_for_kind' };
  if (!isLive(s.status)) return { ok: false, reason: 'not_active' };
  const key = who === 'patient' ? 'patient_away_since' : 'doctor_away_since';
  const cur = s[key];
  if (present) return { ok: true, change: cur === null ? {} : { [key]: null } };
  return { ok: true, change: cur === null ? { [key]: at } : {} };
}
