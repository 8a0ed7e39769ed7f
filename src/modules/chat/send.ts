/**
 * Sending a message: the one send of every door (`/api/v2` session chat, the legacy appointment
 * chat, the original app's REST and socket chat).
 *
 * Into a session, the rules are the core's and each is asked once: who is a participant
 * (`assertParticipant`), what time has done to the session (`onTick`) and whether the session
 * accepts the message and what it changes (`onMessage`: the patient's first message starts the
 * doctor's response window, the doctor's first message activates the session, an ended or
 * expired session refuses). They are asked about the session row as one statement read it; then
 *
 * - when the message changes nothing (a running conversation: nearly every message), one
 *   statement inserts it if the session row is still the version the rules were asked about —
 *   else the send is decided again under the row lock;
 * - when it changes the session (or time has), one transaction locks the row, asks the same
 *   rules about the locked row, and writes the message and the change together.
 *
 * Either way the insert holds the session's row lock, so concurrent sends, ends and expiries of
 * one session serialise on it. Events go out after commit.
 */
import type { AppContext } from '../../context.js';
import type { Message, Session } from '../../db/types.js';
import { DomainError, invalid, notFound } from '../../lib/errors.js';
import { publishEvent } from '../../realtime/events.js';
import { assertParticipant } from '../access.js';
import { formatSessionContext, parseSessionContext, type SessionKind } from '../session-context.js';
import { publishStatus, timingOf, writeChange } from '../sessions/service.js';
import { onMessage, onTick, type SessionChange, type SessionTiming } from '../sessions/state.js';
import * as repo from './repository.js';
import type { ChatScope, LegacySendOperation, NewMessage, SendRow } from './repository.js';
import type { ChatMessageJson } from './schemas.js';
import {
  OPEN_APPOINTMENT_STATUSES,
  appointmentScope,
  eventRoute,
  messageJson,
  sessionScope,
  validateMessage,
  type ChatActor,
  type MessageInput,
} from './service.js';

export interface SendResult {
  message: ChatMessageJson;
  /** False when a retry returned the stored message. */
  created: boolean;
  scope: ChatScope;
}

/** Parses a session context for the send path, with the same errors as `sessionByContext`. */
export function parseContextOrThrow(raw: string): { id: number; kind: SessionKind } {
  const p = parseSessionContext(raw);
  if (p.type === 'session') return { id: p.id, kind: p.kind };
  if (p.type === 'direct') {
    throw new DomainError('SESSION_CONTEXT_REQUIRED', 'direct_session_* is a legacy call routing key, not a session context', {
      context: raw,
    });
  }
  if (p.type === 'nonexistent') throw notFound('Session', { session_context: raw });
  throw invalid('Not a session context: use text_session:{id} or call_session:{id}', { context: raw });
}

/** The session a send is addressed to: by context (id and kind), or by id alone (an appointment's session). */
export interface SessionTarget {
  id: number;
  kind: SessionKind | null;
}

/** What the rules say about a send into a session row. */
type Plan =
  | { kind: 'existing'; messageId: number }
  | { kind: 'refused'; tick: SessionChange; status: Session['status'] }
  | { kind: 'insert'; replyTo: number | null; tick: SessionChange; change: SessionChange };

const isEmpty = (c: SessionChange) => Object.keys(c).length === 0;

/**
 * Asks the rules about a send into the session `s` as read: 403 for a non-participant, the
 * stored message for a retry, 404 for a reply target outside the session (or none, per
 * `unknownReplyTarget`), then the state machine.
 */
function planSend(actor: ChatActor, s: SendRow, input: MessageInput, now: Date, timing: SessionTiming): Plan {
  const party = assertParticipant(actor, s);
  if (s.existing_id !== null) return { kind: 'existing', messageId: s.existing_id };
  let replyTo = input.replyTo;
  if (!s.reply_ok) {
    if (input.unknownReplyTarget !== 'ignore') {
      throw notFound('Message to reply to (in this session)', { reply_to_message_id: input.replyTo, session_id: s.id });
    }
    replyTo = null;
  }
  const tick = onTick(s, now, timing);
  const tickChange = tick.ok ? tick.change : {};
  const ticked = { ...s, ...tickChange };
  const t = onMessage(ticked, party, now, timing);
  if (!t.ok) return { kind: 'refused', tick: tickChange, status: ticked.status };
  return { kind: 'insert', replyTo, tick: tickChange, change: t.change };
}

function notActive(s: Pick<Session, 'id' | 'kind'>, status: Session['status']): DomainError {
  return new DomainError('SESSION_NOT_ACTIVE', `The session is ${status}; no more messages can be sent`, {
    session_id: s.id,
    session_context: formatSessionContext(s.kind, s.id),
    session_status: status,
  });
}

const toNew = (senderId: number, m: MessageInput, replyTo: number | null): NewMessage => ({
  senderId,
  clientMessageId: m.clientMessageId,
  type: m.type,
  body: m.body,
  mediaUrl: m.mediaUrl,
  replyTo,
});

/** The result of a send, announced to the conversation when a message was created. */
async function result(ctx: AppContext, actor: ChatActor, scope: ChatScope, row: Message, created: boolean): Promise<SendResult> {
  const reactions = created ? [] : await repo.reactionsOf(ctx.db, [row.id]);
  // The message is the sender's own (a retry is found by the sender's client id).
  const r: SendResult = { message: messageJson({ ...row, sender_name: actor.name }, scope, reactions), created, scope };
  if (created) publishEvent(ctx.bus, 'message.created', r.message, eventRoute(scope));
  return r;
}

async function stored(ctx: AppContext, actor: ChatActor, scope: ChatScope, messageId: number): Promise<SendResult> {
  const row = await repo.messageInScope(ctx.db, scope, messageId);
  if (!row) throw notFound('Message', { message_id: messageId });
  return result(ctx, actor, scope, row, false);
}

/**
 * Sends into a session. `legacyOperation`: the send came through the legacy appointment chat and
 * would be blocked by ENFORCE_SESSION_GATED_CHAT; the message records it.
 */
export async function sendToSession(
  ctx: AppContext,
  actor: ChatActor,
  target: SessionTarget,
  input: MessageInput,
  legacyOperation: LegacySendOperation | null = null,
): Promise<SendResult> {
  validateMessage(input);
  const read = {
    sessionId: target.id,
    kind: target.kind,
    senderId: actor.id,
    clientMessageId: input.clientMessageId,
    replyTo: input.replyTo,
  };
  const s = await repo.readForSend(ctx.database, read);
  if (!s)
    throw notFound('Session', target.kind ? { session_context: formatSessionContext(target.kind, target.id) } : { session_id: target.id });
  const plan = planSend(actor, s, input, ctx.now(), timingOf(ctx));
  const scope = sessionScope(s);
  if (plan.kind === 'existing') return stored(ctx, actor, scope, plan.messageId);
  if (plan.kind === 'refused' && isEmpty(plan.tick)) throw notActive(s, plan.status);
  if (plan.kind === 'insert' && isEmpty(plan.tick) && isEmpty(plan.change)) {
    const message = toNew(actor.id, input, plan.replyTo);
    const r = await repo.insertIfCurrent(ctx.database, { sessionId: s.id, version: s.version, message, legacyOperation });
    if (r.current) {
      if (r.message) return result(ctx, actor, scope, r.message, true);
      // A concurrent retry with the same client id won the insert.
      const existing = await repo.findByClientId(ctx.db, scope, actor.id, input.clientMessageId!);
      return result(ctx, actor, scope, existing!, false);
    }
  }
  return sendLocked(ctx, actor, read, input, legacyOperation);
}

/** The send under the session's row lock: the same rules, the change written with the message. */
async function sendLocked(
  ctx: AppContext,
  actor: ChatActor,
  read: Parameters<typeof repo.lockForSend>[1],
  input: MessageInput,
  legacyOperation: LegacySendOperation | null,
): Promise<SendResult> {
  // The clock is read before the transaction starts, so the change it stamps (an activation) is
  // never later than the message, whose created_at is the transaction's own now().
  const now = ctx.now();
  const r = await ctx.db.transaction().execute(async (trx) => {
    const before = await repo.lockForSend(trx, read);
    if (!before) throw notFound('Session', { session_id: read.sessionId });
    const plan = planSend(actor, before, input, now, timingOf(ctx));
    if (plan.kind === 'existing') return { kind: plan.kind, before, after: before as Session, messageId: plan.messageId };
    const after = await writeChange(trx, ctx.sessionHooks, before, plan.tick);
    if (plan.kind === 'refused') return { kind: plan.kind, before, after, status: plan.status };
    const scope = sessionScope(after);
    const row = await repo.insertMessage(trx, scope, toNew(actor.id, input, plan.replyTo), legacyOperation);
    if (!row) {
      const existing = await repo.findByClientId(trx, scope, actor.id, input.clientMessageId!);
      return { kind: 'existing' as const, before, after, messageId: existing!.id };
    }
    return { kind: 'created' as const, before, row, after: await writeChange(trx, ctx.sessionHooks, after, plan.change) };
  });
  publishStatus(ctx, r.before, r.after);
  if (r.kind === 'refused') throw notActive(r.after, r.after.status);
  const scope = sessionScope(r.after);
  if (r.kind === 'existing') return stored(ctx, actor, scope, r.messageId);
  return result(ctx, actor, scope, r.row, true);
}

export type AppointmentSendResult = SendResult | { rerouted: true };

/**
 * Pre-session legacy chat (ALLOW_LEGACY_APPOINTMENT_CHAT, no session yet). The appointment row
 * is locked: the session writer locks it too, so a message is either stored before the session
 * exists (and carried into it by the writer) or, if the session won the race, re-routed to it —
 * never left behind. The legacy activity flags the old process-sessions trigger reads are set
 * here.
 */
export async function sendToAppointment(
  ctx: AppContext,
  actor: ChatActor,
  appointmentId: number,
  input: MessageInput,
): Promise<AppointmentSendResult> {
  validateMessage(input);
  const r = await ctx.db.transaction().execute(async (trx) => {
    const a = await trx
      .selectFrom('appointments')
      .select(['id', 'status', 'session_id', 'patient_id', 'doctor_id', 'legacy_patient_active', 'legacy_doctor_active'])
      .where('id', '=', appointmentId)
      .forNoKeyUpdate()
      .executeTakeFirst();
    if (!a) throw notFound('Appointment', { appointment_id: appointmentId });
    const party = assertParticipant(actor, a);
    if (a.session_id !== null) return { kind: 'rerouted' as const };
    const scope = appointmentScope(a);
    if (input.clientMessageId !== null) {
      const existing = await repo.findByClientId(trx, scope, actor.id, input.clientMessageId);
      if (existing) return { kind: 'existing' as const, row: existing, scope };
    }
    if (!OPEN_APPOINTMENT_STATUSES.has(a.status)) {
      throw new DomainError('SESSION_NOT_ACTIVE', `The appointment is ${a.status}; no more messages can be sent`, {
        appointment_id: a.id,
        appointment_status: a.status,
      });
    }
    let replyTo = input.replyTo;
    if (replyTo !== null && !(await repo.messageInScope(trx, scope, replyTo))) {
      if (input.unknownReplyTarget !== 'ignore') {
        throw notFound('Message to reply to (in this conversation)', { reply_to_message_id: replyTo, appointment_id: a.id });
      }
      replyTo = null;
    }
    const flag = party === 'patient' ? 'legacy_patient_active' : 'legacy_doctor_active';
    if (!a[flag])
      await trx
        .updateTable('appointments')
        .set({ [flag]: true })
        .where('id', '=', a.id)
        .execute();
    const row = await repo.insertMessage(trx, scope, toNew(actor.id, input, replyTo));
    if (!row) return { kind: 'existing' as const, row: (await repo.findByClientId(trx, scope, actor.id, input.clientMessageId!))!, scope };
    return { kind: 'created' as const, row, scope };
  });
  if (r.kind === 'rerouted') return { rerouted: true };
  return result(ctx, actor, r.scope, r.row, r.kind === 'created');
}
