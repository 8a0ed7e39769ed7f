/**
 * Legacy appointment-addressed chat, `/api/v2/chat/{id}/…`, behind the SessionContextGuard
 * (its decision table: `guard/decision.ts`). The path parameter is classified first:
 *
 * | `{id}`                                   | result                                              |
 * |------------------------------------------|-----------------------------------------------------|
 * | `text_session:12`, `text_session_12`, …  | served as that session's chat (no guard: it *is* the session context) |
 * | `direct_session_*`                       | 400 SESSION_CONTEXT_REQUIRED (blocked, recorded)     |
 * | anything else non-numeric                | 400 VALIDATION_FAILED / 404 for an unknown session   |
 * | an appointment id                        | 404 / 403 FORBIDDEN, then `decideLegacyChat`:        |
 * |   session, ENFORCE on                    | 400 SESSION_CONTEXT_REQUIRED + session_id, session_context |
 * |   session, ENFORCE off                   | served by the session's chat; would-block           |
 * |   no session, ALLOW_LEGACY off           | 403 SESSION_NOT_READY + appointment_id, poll_url    |
 * |   no session, ALLOW_LEGACY on            | pre-session chat stored per appointment             |
 *
 * Every decision on an appointment id is logged (`SessionContextGuard: Chat operation blocked` /
 * `… allowed (legacy)`), counted, and recorded as a guard event with its ids.
 */
import type { AppContext } from '../../context.js';
import type { Appointment, Session } from '../../db/types.js';
import { DomainError, invalid, notFound } from '../../lib/errors.js';
import { assertCanRead, assertParticipant } from '../access.js';
import { getAppointment } from '../appointments/service.js';
import { decideLegacyChat, type ChatOperation } from '../guard/decision.js';
import { recordGuardEvent, type GuardEvent } from '../guard/events.js';
import { countGuardDecision, logGuardDecision } from '../guard/report.js';
import { classifyChatPathParam, formatSessionContext } from '../session-context.js';
import { freshSession, sessionByContext } from '../sessions/service.js';
import * as repo from './repository.js';
import type { ChatScope, LegacySendOperation } from './repository.js';
import type { ChatMessageJson, LegacyMessageJson } from './schemas.js';
import { sendToAppointment, sendToSession, type SendResult } from './send.js';
import { appointmentScope, markRead, sessionScope, validateMessage, type ChatActor, type MessageInput } from './service.js';

/** The operations that only read; admins may do these (read-only), everything else is participants only. */
const READ_OPERATIONS: ReadonlySet<ChatOperation> = new Set(['getMessages']);

export type LegacyTarget =
  | { mode: 'session'; session: Session; scope: ChatScope; appointmentId: number | null }
  | { mode: 'appointment'; scope: ChatScope; appointmentId: number };

type ChatGuardReport = Omit<GuardEvent, 'guard'> & { errorCode?: string; reason?: string };

/** Reports one guard decision: log line, metric, guard-event row. */
export async function reportChatGuard(ctx: AppContext, e: ChatGuardReport): Promise<void> {
  await recordGuardEvent(ctx.db, announceChatGuard(ctx, e));
}

/** The log line and the metric of a guard decision; returns the event to record. */
function announceChatGuard(ctx: AppContext, e: ChatGuardReport): GuardEvent {
  const event: GuardEvent = {
    guard: 'chat',
    operation: e.operation,
    outcome: e.outcome,
    enforced: e.enforced,
    appointmentId: e.appointmentId,
    sessionId: e.sessionId,
    userId: e.userId,
  };
  logGuardDecision(ctx.log, { ...event, errorCode: e.errorCode, reason: e.reason });
  countGuardDecision(ctx.metrics, event);
  return event;
}

const sessionChatUrl = (context: string) => `/api/v2/sessions/${context}/messages`;
export const pollUrl = (appointmentId: number) => `/api/v2/appointments/${appointmentId}/session`;

/**
 * The guard on an appointment-addressed chat: 404 / 403 FORBIDDEN, then `decideLegacyChat`.
 * Blocks throw (reported); a conversation served by the session is logged and counted as
 * would-block, and its event returned for the caller to record (a send records it on its message).
 */
async function guardAppointmentChat(
  ctx: AppContext,
  actor: ChatActor,
  appointmentId: number,
  operation: ChatOperation,
): Promise<
  { mode: 'session'; sessionId: number; appointmentId: number; wouldBlock: GuardEvent } | { mode: 'appointment'; appointment: Appointment }
> {
  const a = await getAppointment(ctx.db, appointmentId);
  if (!a) throw notFound('Appointment', { appointment_id: appointmentId });
  if (READ_OPERATIONS.has(operation)) assertCanRead(actor, a);
  else assertParticipant(actor, a);

  const flags = await ctx.flags.current();
  const decision = decideLegacyChat({
    sessionId: a.session_id,
    enforceChat: flags.ENFORCE_SESSION_GATED_CHAT,
    allowLegacyChat: flags.ALLOW_LEGACY_APPOINTMENT_CHAT,
  });
  const base = { operation, appointmentId: a.id, sessionId: a.session_id, userId: actor.id };

  if (decision.action === 'block' && decision.errorCode === 'SESSION_CONTEXT_REQUIRED') {
    const s = await ctx.db.selectFrom('sessions').select(['id', 'kind']).where('id', '=', a.session_id!).executeTakeFirstOrThrow();
    const context = formatSessionContext(s.kind, s.id);
    await reportChatGuard(ctx, { ...base, outcome: 'blocked', enforced: true, errorCode: 'SESSION_CONTEXT_REQUIRED' });
    throw new DomainError('SESSION_CONTEXT_REQUIRED', 'Chat must be accessed through session context. Please use the session endpoint.', {
      appointment_id: a.id,
      session_id: s.id,
      session_context: context,
      session_chat_url: sessionChatUrl(context),
    });
  }
  if (decision.action === 'block') {
    await reportChatGuard(ctx, { ...base, outcome: 'not_ready', enforced: true, errorCode: 'SESSION_NOT_READY' });
    throw new DomainError(
      'SESSION_NOT_READY',
      `Session is not ready yet. Poll GET ${pollUrl(a.id)} until session_context appears, then chat through /api/v2/sessions/{session_context}/messages.`,
      { appointment_id: a.id, appointment_status: a.status, poll_url: pollUrl(a.id) },
    );
  }
  if (decision.action === 'serve_session') {
    const wouldBlock = announceChatGuard(ctx, { ...base, outcome: 'would_block', enforced: false });
    return { mode: 'session', sessionId: a.session_id!, appointmentId: a.id, wouldBlock };
  }
  await reportChatGuard(ctx, { ...base, outcome: 'allowed_legacy', enforced: false });
  return { mode: 'appointment', appointment: a };
}

/**
 * Resolves the `{id}` of a legacy chat route to a conversation, applying the guard. Throws the
 * guard's errors (and 404/403) as domain errors.
 */
export async function resolveLegacyChat(ctx: AppContext, actor: ChatActor, raw: string, operation: ChatOperation): Promise<LegacyTarget> {
  const param = classifyChatPathParam(raw);
  switch (param.type) {
    case 'session':
    case 'nonexistent': {
      // Old clients put `text_session_123` here: that is a session context, served as such.
      let s = await sessionByContext(ctx.db, raw);
      if (READ_OPERATIONS.has(operation)) assertCanRead(actor, s);
      else assertParticipant(actor, s);
      s = await freshSession(ctx, s);
      return { mode: 'session', session: s, scope: sessionScope(s), appointmentId: s.appointment_id };
    }
    case 'direct':
      return refuseDirect(ctx, actor, raw, operation);
    case 'invalid':
      throw new DomainError('VALIDATION_FAILED', 'Not an appointment id or a session context', { id: raw });
    case 'appointment':
      break;
  }
  const target = await guardAppointmentChat(ctx, actor, param.id, operation);
  if (target.mode === 'appointment')
    return { mode: 'appointment', scope: appointmentScope(target.appointment), appointmentId: target.appointment.id };
  await recordGuardEvent(ctx.db, target.wouldBlock);
  let s = await ctx.db.selectFrom('sessions').selectAll().where('id', '=', target.sessionId).executeTakeFirstOrThrow();
  s = await freshSession(ctx, s);
  return { mode: 'session', session: s, scope: sessionScope(s), appointmentId: target.appointmentId };
}

async function refuseDirect(ctx: AppContext, actor: ChatActor, raw: string, operation: ChatOperation): Promise<never> {
  await reportChatGuard(ctx, {
    operation,
    outcome: 'blocked',
    enforced: true,
    appointmentId: null,
    sessionId: null,
    userId: actor.id,
    errorCode: 'SESSION_CONTEXT_REQUIRED',
    reason: 'direct_session_key',
  });
  throw new DomainError(
    'SESSION_CONTEXT_REQUIRED',
    'direct_session_* is a legacy call routing key, not a chat: use the session context (text_session:{id} or call_session:{id})',
    {
      context: raw,
    },
  );
}

/** A message in the shape the old mobile clients parse. */
export function legacyMessageJson(
  m: ChatMessageJson,
  reactions: { message_id: number; user_id: number; emoji: string; created_at: Date; user_name: string }[] = [],
): LegacyMessageJson {
  return {
    id: m.id,
    appointment_id: m.appointment_id,
    session_id: m.session_id,
    session_context: m.session_context,
    sender_id: m.sender_id,
    sender_name: m.sender_name,
    message: m.body,
    message_type: m.type,
    media_url: m.media_url,
    temp_id: m.client_message_id,
    reply_to_id: m.reply_to_message_id,
    reactions: reactions
      .filter((r) => r.message_id === m.id)
      .map((r) => ({ reaction: r.emoji, user_id: r.user_id, user_name: r.user_name, timestamp: r.created_at.toISOString() })),
    created_at: m.created_at,
    timestamp: m.created_at,
  };
}

/**
 * Legacy send / reply addressed by a legacy chat `{id}`: a session context is that session's
 * send; an appointment id goes through the guard, then into the session it serves (the message
 * records the would-block decision) or the appointment's pre-session chat. Every door of legacy
 * chat (`/api/v2/chat/{id}/…`, the original app's `/api/chat/{id}/…` and its socket) sends here.
 */
export async function sendLegacy(
  ctx: AppContext,
  actor: ChatActor,
  rawId: string,
  operation: LegacySendOperation,
  input: MessageInput,
): Promise<SendResult> {
  validateMessage(input);
  const param = classifyChatPathParam(rawId);
  switch (param.type) {
    case 'session':
      return sendToSession(ctx, actor, { id: param.id, kind: param.kind }, input);
    case 'nonexistent':
      throw notFound('Session', { session_context: rawId });
    case 'direct':
      return refuseDirect(ctx, actor, rawId, operation);
    case 'invalid':
      throw new DomainError('VALIDATION_FAILED', 'Not an appointment id or a session context', { id: rawId });
    case 'appointment':
      break;
  }
  for (let attempt = 0; ; attempt++) {
    const target = await guardAppointmentChat(ctx, actor, param.id, operation);
    if (target.mode === 'session') {
      // The would-block decision is recorded on the message; a send that wrote none records it as a row.
      let r: SendResult;
      try {
        r = await sendToSession(ctx, actor, { id: target.sessionId, kind: null }, input, operation);
      } catch (err) {
        await recordGuardEvent(ctx.db, target.wouldBlock);
        throw err;
      }
      if (!r.created) await recordGuardEvent(ctx.db, target.wouldBlock);
      return r;
    }
    const r = await sendToAppointment(ctx, actor, target.appointment.id, input);
    // The session started between the guard's look and the appointment lock: decide again.
    if ('rerouted' in r) {
      if (attempt < 2) continue;
      throw invalid('The conversation changed while sending; retry');
    }
    return r;
  }
}

/** Legacy mark-read: everything up to `timestamp` (default: all) read for the actor, in a resolved conversation. */
export async function legacyMarkRead(
  ctx: AppContext,
  actor: ChatActor,
  scope: ChatScope,
  timestamp: string | undefined,
): Promise<{ success: true; message: string; marked_count: number; last_read_message_id: number | null }> {
  let at: Date | undefined;
  if (timestamp !== undefined) {
    at = new Date(timestamp);
    // Bounded to years 1..9999: JavaScript dates reach ±275,760, beyond what timestamptz stores.
    if (Number.isNaN(at.getTime()) || at.getUTCFullYear() < 1 || at.getUTCFullYear() > 9999) {
      throw invalid('timestamp must be an ISO-8601 date-time');
    }
  }
  const upTo = await repo.latestMessageId(ctx.db, scope, at);
  if (upTo === null) {
    return {
      success: true,
      message: 'Nothing to mark',
      marked_count: 0,
      last_read_message_id: await repo.readHorizon(ctx.db, scope, actor.id),
    };
  }
  const r = await markRead(ctx, actor, scope, upTo);
  const marked = r.moved ? await repo.countFromOthersBetween(ctx.db, scope, actor.id, r.previous, r.last_read_message_id) : 0;
  return { success: true, message: 'Messages marked as read', marked_count: marked, last_read_message_id: r.last_read_message_id };
}
