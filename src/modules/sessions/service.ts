/**
 * Sessions: look-ups, starting (appointment and instant), ending, call transitions and expiry.
 * Every change locks the session row, asks the pure state machine (state.ts) and writes its
 * answer; side effects that must not be lost (appointment status, billing settlement) happen in
 * the same transaction, events after commit.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import { LIVE_SESSION_STATUSES, type Executor, type Modality, type Session, type Trx } from '../../db/types.js';
import { DomainError, conflict, forbidden, isUniqueViolation, notFound } from '../../lib/errors.js';
import { accessOf, assertCanRead, assertParticipant, type Actor } from '../access.js';
import { getAppointmentOrThrow } from '../appointments/service.js';
import { formatSessionContext, parseSessionContext } from '../session-context.js';
import type { SessionHooks } from './hooks.js';
import { modalityForAppointmentType } from '../appointments/modality.js';
import {
  consultationHappened,
  initialStatus,
  isLive,
  kindOf,
  onDecline,
  onEnd,
  onHangUp,
  onJoin,
  onLeave,
  onTick,
  type Party,
  type SessionChange,
  type SessionTiming,
  type Transition,
} from './state.js';
import { convertAppointments } from './writer.js';

export const timingOf = (ctx: AppContext): SessionTiming => ({
  responseWindowSeconds: ctx.config.textSessionResponseWindowSeconds,
  joinWindowMinutes: ctx.config.sessionJoinWindowMinutes,
  ringTimeoutSeconds: ctx.config.callRingTimeoutSeconds,
});

export const contextOf = (s: Pick<Session, 'kind' | 'id'>) => formatSessionContext(s.kind, s.id);

/**
 * Resolves a session context string to the session, or throws: `direct_session_*` and
 * malformed strings → 400 SESSION_CONTEXT_REQUIRED / VALIDATION_FAILED; unknown or a kind
 * mismatch (`call_session:` naming a text session) → 404.
 */
export async function sessionByContext(db: Executor, raw: string): Promise<Session> {
  const parsed = parseSessionContext(raw);
  if (parsed.type === 'direct') {
    throw new DomainError('SESSION_CONTEXT_REQUIRED', 'direct_session_* is a legacy call routing key, not a session context', {
      context: raw,
    });
  }
  if (parsed.type === 'invalid') {
    throw new DomainError('VALIDATION_FAILED', 'Not a session context: use text_session:{id} or call_session:{id}', { context: raw });
  }
  if (parsed.type === 'nonexistent') throw notFound('Session', { session_context: raw });
  const s = await db.selectFrom('sessions').selectAll().where('id', '=', parsed.id).executeTakeFirst();
  if (!s || s.kind !== parsed.kind) throw notFound('Session', { session_context: parsed.context });
  return s;
}

/** Sessions by id (any order; unknown ids are absent). */
export async function sessionsByIds(db: Executor, ids: readonly number[]): Promise<Session[]> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return [];
  return db.selectFrom('sessions').selectAll().where('id', 'in', unique).execute();
}

/** The live sessions the actor takes part in (as patient or doctor), newest first. */
export async function liveSessionsOf(db: Executor, actor: Actor): Promise<Session[]> {
  if (actor.role !== 'patient' && actor.role !== 'doctor') return [];
  return db
    .selectFrom('sessions')
    .selectAll()
    .where(actor.role === 'patient' ? 'patient_id' : 'doctor_id', '=', actor.id)
    .where('status', 'in', [...LIVE_SESSION_STATUSES])
    .orderBy('id', 'desc')
    .execute();
}

/** Whether the doctor is in a live session: "busy" for new instant sessions. */
export async function doctorInLiveSession(db: Executor, doctorId: number): Promise<boolean> {
  const row = await db
    .selectFrom('sessions')
    .select('id')
    .where('doctor_id', '=', doctorId)
    .where('status', 'in', [...LIVE_SESSION_STATUSES])
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * The newest call session named by an original-app routing key (`direct_session_<ms>`) that the
 * actor takes part in. Keys are unique per patient only, so the actor picks among them; a key
 * that exists only in strangers' calls is 403, an unknown key 404.
 */
export async function sessionByRoutingKey(db: Executor, actor: Actor, key: string): Promise<Session> {
  const rows = await db.selectFrom('sessions').selectAll().where('routing_key', '=', key).orderBy('id', 'desc').limit(20).execute();
  if (rows.length === 0) throw notFound('Call', { call_key: key });
  const mine = rows.find((s) => accessOf(actor, s) === 'patient' || accessOf(actor, s) === 'doctor');
  if (!mine) throw forbidden('You are not a participant of this call');
  return mine;
}

/** A session the actor may read (participants and admins). */
export async function readableSession(db: Executor, actor: Actor, raw: string): Promise<Session> {
  const s = await sessionByContext(db, raw);
  assertCanRead(actor, s);
  return s;
}

/**
 * A session the actor may act in (its two participants). Call it before anything that may
 * advance the session (`freshSession`), so a stranger's refused request changes nothing.
 */
export async function participantSession(db: Executor, actor: Actor, raw: string): Promise<Session> {
  const s = await sessionByContext(db, raw);
  assertParticipant(actor, s);
  return s;
}

export function sessionJson(s: Session) {
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  return {
    id: s.id,
    session_context: contextOf(s),
    kind: s.kind,
    modality: s.modality,
    source: s.source,
    appointment_id: s.appointment_id,
    patient_id: s.patient_id,
    doctor_id: s.doctor_id,
    status: s.status,
    created_at: s.created_at.toISOString(),
    activated_at: iso(s.activated_at),
    connected_at: iso(s.connected_at),
    ended_at: iso(s.ended_at),
    end_reason: s.end_reason,
    doctor_response_deadline: iso(s.doctor_response_deadline),
    patient_in_call: s.patient_in_call,
    doctor_in_call: s.doctor_in_call,
    credits_at_start: s.credits_at_start,
    units_billed: s.units_billed,
  };
}

export async function lockSession(trx: Trx, id: number): Promise<Session> {
  const s = await trx.selectFrom('sessions').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
  if (!s) throw notFound('Session', { session_id: id });
  return s;
}

/**
 * Writes a transition's change to a locked session, and what follows from it in the same
 * transaction: when the session stops being live, its appointment becomes completed or missed
 * and the `ended` hook (billing) settles it.
 */
export async function writeChange(trx: Trx, hooks: SessionHooks, s: Session, change: SessionChange): Promise<Session> {
  if (Object.keys(change).length === 0) return s;
  const updated = await trx.updateTable('sessions').set(change).where('id', '=', s.id).returningAll().executeTakeFirstOrThrow();
  if (isLive(s.status) && !isLive(updated.status)) {
    if (updated.appointment_id !== null) {
      await trx
        .updateTable('appointments')
        .set({ status: consultationHappened(updated) ? 'completed' : 'missed' })
        .where('id', '=', updated.appointment_id)
        .where('status', '=', 'in_progress')
        .execute();
    }
    // Settlement may move the row again (units billed, a short end at the paid boundary).
    return hooks.ended(trx, updated);
  }
  return updated;
}

/** Publishes the session's new status to its subscribers (after commit). */
export function publishStatus(ctx: AppContext, before: Pick<Session, 'status'>, after: Session): void {
  if (before.status === after.status) return;
  void ctx.bus.publish({
    type: 'session.status',
    sessionId: after.id,
    payload: {
      session_id: after.id,
      session_context: contextOf(after),
      status: after.status,
      previous: before.status,
      end_reason: after.end_reason,
    },
  });
}

/**
 * Runs `decide` on the locked session and writes the result; refusals become 4xx.
 * Time-based transitions are applied first (a text session past its response window is expired
 * before a late doctor message is judged), and they are committed even when `decide` then
 * refuses — the refusal is thrown after the commit.
 */
export async function transition(
  ctx: AppContext,
  sessionId: number,
  decide: (s: Session) => Transition,
): Promise<{ before: Session; after: Session }> {
  const timing = timingOf(ctx);
  const result = await ctx.db.transaction().execute(async (trx) => {
    const before = await lockSession(trx, sessionId);
    const tick = onTick(before, ctx.now(), timing);
    const current = tick.ok ? await writeChange(trx, ctx.sessionHooks, before, tick.change) : before;
    const t = decide(current);
    if (!t.ok) return { before, after: current, refusal: t.reason };
    return { before, after: await writeChange(trx, ctx.sessionHooks, current, t.change), refusal: null };
  });
  publishStatus(ctx, result.before, result.after);
  const { after, refusal } = result;
  if (refusal === 'not_active') {
    throw new DomainError('SESSION_NOT_ACTIVE', `The session is ${after.status}`, { session_id: after.id, session_status: after.status });
  }
  if (refusal) {
    throw conflict(
      refusal === 'invalid_for_kind' ? 'Not possible for this kind of session' : `Not possible while the session is ${after.status}`,
      {
        session_id: after.id,
        session_status: after.status,
      },
    );
  }
  return { before: result.before, after };
}

export async function endSession(ctx: AppContext, actor: Actor, raw: string, reason?: string) {
  const s = await sessionByContext(ctx.db, raw);
  const who = assertParticipant(actor, s);
  return transition(ctx, s.id, (cur) => onEnd(cur, ctx.now(), reason ?? `ended_by_${who}`));
}

export type CallAction = 'join' | 'leave' | 'decline' | 'hangup';

export async function callAction(ctx: AppContext, actor: Actor, raw: string, action: CallAction) {
  const s = await sessionByContext(ctx.db, raw);
  const who: Party = assertParticipant(actor, s);
  const now = ctx.now();
  const fn = { join: onJoin, leave: onLeave, decline: onDecline, hangup: onHangUp }[action];
  return transition(ctx, s.id, (cur) => fn(cur, who, now));
}

/** Applies time-based transitions (expiry, ring timeout) to one session; used by the worker and on read. */
export async function tickSession(ctx: AppContext, sessionId: number): Promise<Session | null> {
  return (await tickSessionChange(ctx, sessionId))?.after ?? null;
}

/**
 * {@link tickSession} with the state before the tick. `null` when the session is locked by
 * another transaction right now (SKIP LOCKED: the worker does not queue behind a request; the
 * next run or read picks it up) or does not exist.
 */
export async function tickSessionChange(ctx: AppContext, sessionId: number): Promise<{ before: Session; after: Session } | null> {
  const timing = timingOf(ctx);
  const now = ctx.now();
  const result = await ctx.db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom('sessions').selectAll().where('id', '=', sessionId).forUpdate().skipLocked().executeTakeFirst();
    if (!before) return null;
    const t = onTick(before, now, timing);
    if (!t.ok || Object.keys(t.change).length === 0) return { before, after: before };
    return { before, after: await writeChange(trx, ctx.sessionHooks, before, t.change) };
  });
  if (!result) return null;
  publishStatus(ctx, result.before, result.after);
  return result;
}

/** Expiry also happens on read: a waiting session past its window is expired before it is shown. */
export async function freshSession(ctx: AppContext, s: Session): Promise<Session> {
  if (!isLive(s.status)) return s;
  const t = onTick(s, ctx.now(), timingOf(ctx));
  if (!t.ok || Object.keys(t.change).length === 0) return s;
  return (await tickSession(ctx, s.id)) ?? s;
}

/** `POST /api/v2/appointments/{id}/start-session`: from 15 minutes before the time; idempotent. */
export const START_EARLY_MINUTES = 15;

export async function startAppointmentSession(
  ctx: AppContext,
  actor: Actor,
  appointmentId: number,
): Promise<{ session: Session; created: boolean }> {
  const a = await getAppointmentOrThrow(ctx.db, appointmentId);
  assertParticipant(actor, a);
  if (a.session_id !== null) {
    const s = await ctx.db.selectFrom('sessions').selectAll().where('id', '=', a.session_id).executeTakeFirstOrThrow();
    return { session: s, created: false };
  }
  if (a.status !== 'confirmed')
    throw conflict(`Cannot start a session for a ${a.status} appointment`, { appointment_id: a.id, appointment_status: a.status });
  if (a.scheduled_at.getTime() - ctx.now().getTime() > START_EARLY_MINUTES * 60_000) {
    throw conflict(`The session can start from ${START_EARLY_MINUTES} minutes before the appointment`, {
      appointment_id: a.id,
      scheduled_at: a.scheduled_at.toISOString(),
    });
  }
  const modality = modalityForAppointmentType(a.appointment_type);
  if (modality) {
    await ctx.db.transaction().execute((trx) => ctx.sessionHooks.beforeStart(trx, a.patient_id, modality));
  }
  const [outcome] = await convertAppointments(ctx, [a.id], { source: 'start_session', recordAttempts: false });
  if (!outcome) throw notFound('Appointment', { appointment_id: a.id });
  if (outcome.result === 'deferred') throw conflict('The patient is already in another live session', { appointment_id: a.id });
  if (outcome.result === 'failed') {
    if (outcome.reason === 'createSession_conflict_existing_session') {
      throw conflict('The patient is already in another live session', { appointment_id: a.id });
    }
    throw conflict(`The session could not be started (${outcome.reason})`, { appointment_id: a.id, reason: outcome.reason });
  }
  if (outcome.sessionId === null) {
    const now = await getAppointmentOrThrow(ctx.db, a.id);
    throw conflict(`Cannot start a session for a ${now.status} appointment`, { appointment_id: a.id, appointment_status: now.status });
  }
  const s = await ctx.db.selectFrom('sessions').selectAll().where('id', '=', outcome.sessionId).executeTakeFirstOrThrow();
  return { session: s, created: outcome.result === 'created' };
}

/**
 * An instant session (no appointment): the patient asks a doctor now. The doctor's row is
 * locked while we look for their live sessions, so two patients cannot both get a busy doctor;
 * the patient's one-live-session rule is the unique index.
 */
export async function createInstantSession(
  ctx: AppContext,
  actor: Actor,
  input: { doctor_id: number; modality: Modality; routing_key?: string | null },
): Promise<Session> {
  if (actor.role !== 'patient') throw new DomainError('FORBIDDEN', 'Only patients start instant sessions');
  const kind = kindOf(input.modality);
  const routingKey = input.routing_key ?? null;
  if (routingKey !== null && kind !== 'call') throw new DomainError('VALIDATION_FAILED', 'Only calls have a routing key');
  const { session, created } = await ctx.db.transaction().execute(async (trx) => {
    // FOR NO KEY UPDATE serialises instant starts for this doctor without blocking the
    // FOR KEY SHARE that inserting any session referencing the doctor takes (a batch of
    // appointment sessions must not queue behind — or deadlock with — an instant start).
    const doctor = await trx
      .selectFrom('users')
      .select(['id', 'role', 'deactivated_at'])
      .where('id', '=', input.doctor_id)
      .forNoKeyUpdate()
      .executeTakeFirst();
    if (!doctor || doctor.role !== 'doctor' || doctor.deactivated_at !== null) throw notFound('Doctor', { doctor_id: input.doctor_id });
    if (routingKey !== null) {
      // A retried start with the same key (one patient's clock) is the same call. Looked up under
      // the doctor's lock, which serialises instant starts with this doctor; the unique index on
      // (routing_key, patient_id) backs it.
      const existing = await trx
        .selectFrom('sessions')
        .selectAll()
        .where('routing_key', '=', routingKey)
        .where('patient_id', '=', actor.id)
        .executeTakeFirst();
      if (existing) {
        if (existing.doctor_id !== doctor.id || existing.modality !== input.modality) {
          throw conflict('This call key already names another call', { routing_key: routingKey });
        }
        return { session: existing, created: false };
      }
    }
    if (await doctorInLiveSession(trx, doctor.id)) throw conflict('The doctor is busy in another session', { doctor_id: doctor.id });
    await ctx.sessionHooks.beforeStart(trx, actor.id, input.modality);
    try {
      return await trx
        .insertInto('sessions')
        .values({
          kind,
          modality: input.modality,
          source: 'INSTANT',
          patient_id: actor.id,
          doctor_id: doctor.id,
          status: initialStatus(kind),
          routing_key: routingKey,
          allowed_minutes: ctx.config.instantSessionMaxMinutes,
          credits_at_start: sql<number>`(select coalesce(sum(${sql.ref(`${input.modality}_remaining`)}), 0)::int from subscriptions
            where patient_id = ${actor.id} and starts_at <= now() and expires_at > now())`,
        })
        .returningAll()
        .executeTakeFirstOrThrow()
        .then((s) => ({ session: s, created: true }));
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('You already have a live session', { patient_id: actor.id });
      throw err;
    }
  });
  if (!created) return session;
  void ctx.bus.publish({
    type: 'session.status',
    sessionId: session.id,
    userIds: [session.doctor_id],
    payload: { session_id: session.id, session_context: contextOf(session), status: session.status, previous: null, end_reason: null },
  });
  return session;
}
