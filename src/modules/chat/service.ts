/**
 * Chat operations on a conversation (a session, or an appointment's pre-session legacy chat):
 * send, list, react, typing, read. The session routes and the legacy routes both call these;
 * only the addressing and the response shapes differ.
 *
 * Sending into a session takes the session row lock in the transaction that inserts the message
 * and asks the state machine (`onMessage`): the patient's first message starts the doctor's
 * response window, the doctor's first message activates the session, and a message into an
 * ended or expired session is refused — race-free, because concurrent sends, ends and expiries
 * of one session serialise on that lock. Events go out after commit.
 */
import type { AppContext } from '../../context.js';
import type { Appointment, Message, Session, Trx } from '../../db/types.js';
import { DomainError, invalid, notFound } from '../../lib/errors.js';
import { iso } from '../../lib/schemas.js';
import type { AuthUser } from '../../plugins/auth.js';
import { publishEvent, type ChatScopeIds, type EventRoute } from '../../realtime/events.js';
import { assertCanRead, assertParticipant } from '../access.js';
import { formatSessionContext, parseSessionContext, type SessionKind } from '../session-context.js';
import { lockSession, publishStatus, sessionByContext, timingOf, writeChange } from '../sessions/service.js';
import { isLive, onMessage, onTick } from '../sessions/state.js';
import { checkBody, isAcceptableMediaUrl, isAcceptableReaction, isStorableText } from './content.js';
import * as repo from './repository.js';
import type { ChatScope, MessageWithSender, NewMessage, Page } from './repository.js';
import { DEFAULT_PAGE, type ChatMessageJson, type MessageType } from './schemas.js';
import { typingKey, type TypingRegistry } from './typing.js';

export type ChatActor = Pick<AuthUser, 'id' | 'role' | 'name'>;

/** Appointment statuses in which pre-session legacy chat still accepts writes. */
const OPEN_APPOINTMENT_STATUSES = new Set(['pending', 'confirmed', 'in_progress']);

export function sessionScope(s: Pick<Session, 'id' | 'kind' | 'status' | 'appointment_id' | 'patient_id' | 'doctor_id'>): ChatScope {
  return { kind: 'session', sessionId: s.id, sessionKind: s.kind, status: s.status, appointmentId: s.appointment_id, patientId: s.patient_id, doctorId: s.doctor_id };
}

export function appointmentScope(a: Pick<Appointment, 'id' | 'status' | 'patient_id' | 'doctor_id'>): ChatScope {
  return { kind: 'appointment', sessionId: null, sessionKind: null, status: a.status, appointmentId: a.id, patientId: a.patient_id, doctorId: a.doctor_id };
}

export function scopeIds(scope: ChatScope): ChatScopeIds {
  return {
    session_id: scope.sessionId,
    session_context: scope.sessionId !== null && scope.sessionKind ? formatSessionContext(scope.sessionKind, scope.sessionId) : null,
    appointment_id: scope.appointmentId,
  };
}

/** Session events go to the session's subscribers; pre-session chat to the two participants. */
export function eventRoute(scope: ChatScope): EventRoute {
  return scope.kind === 'session' ? { sessionId: scope.sessionId! } : { userIds: [scope.patientId, scope.doctorId] };
}

export interface MessageInput {
  clientMessageId: string | null;
  type: MessageType;
  body: string;
  mediaUrl: string | null;
  replyTo: number | null;
  /**
   * What a reply target outside the conversation does: `reject` (404, the default) or `ignore`
   * (the message is stored as a plain message). The original mobile client names reply targets
   * by its local ids, which may be temporary ids the server never saw.
   */
  unknownReplyTarget?: 'reject' | 'ignore';
}

/**
 * Content rules of a message (SPEC §2.6): text needs visible text and no media; image and voice
 * need an acceptable media URL; no body may carry HTML, scripts or links (CONTENT_BLOCKED).
 */
export function validateMessage(m: MessageInput): void {
  if (m.clientMessageId !== null && (!isStorableText(m.clientMessageId) || /[\r\n\t]/.test(m.clientMessageId))) {
    throw invalid('client_message_id must be printable text');
  }
  const check = checkBody(m.body);
  if (!check.ok && check.kind === 'invalid') throw invalid(check.message);
  if (m.type === 'text') {
    if (m.body.trim().length === 0) throw invalid('A text message needs a body');
    if (m.mediaUrl !== null) throw invalid('media_url is only for image and voice messages');
  } else if (m.mediaUrl === null || !isAcceptableMediaUrl(m.mediaUrl)) {
    throw invalid(`A ${m.type} message needs a media_url (https:// or a same-origin path)`);
  }
  if (!check.ok) {
    throw new DomainError('CONTENT_BLOCKED', 'Message contains content that is not allowed. Please remove any links, HTML, or scripts and try again.', {
      reasons: check.reasons,
    });
  }
}

export function validateReaction(r: string): void {
  if (!isAcceptableReaction(r)) throw invalid('reaction must be a single emoji (1 to 10 characters, no spaces or markup)');
}

type ReactionRow = Awaited<ReturnType<typeof repo.reactionsOf>>[number];

export function messageJson(m: Message & { sender_name: string }, scope: ChatScope, reactions: ReactionRow[] = []): ChatMessageJson {
  const sessionId = m.session_id;
  const kind: SessionKind | null = scope.sessionKind;
  return {
    id: m.id,
    session_id: sessionId,
    session_context: sessionId !== null && kind ? formatSessionContext(kind, sessionId) : null,
    appointment_id: m.appointment_id ?? scope.appointmentId,
    sender_id: m.sender_id,
    sender_name: m.sender_name,
    sender_role: m.sender_id === scope.doctorId ? 'doctor' : 'patient',
    client_message_id: m.client_message_id,
    type: m.type,
    body: m.body,
    media_url: m.media_url,
    reply_to_message_id: m.reply_to_message_id,
    reactions: reactions.filter((r) => r.message_id === m.id).map((r) => ({ reaction: r.emoji, user_id: r.user_id })),
    created_at: iso(m.created_at)!,
  };
}

export interface SendResult {
  message: ChatMessageJson;
  /** False when a retry returned the stored message. */
  created: boolean;
  scope: ChatScope;
}

/** The reply target to store: `m.replyTo` when it is a message of the scope, else per `unknownReplyTarget`. */
async function replyTarget(trx: Trx, scope: ChatScope, m: MessageInput, what: string, ids: Record<string, number | null>): Promise<number | null> {
  if (m.replyTo === null || (await repo.messageInScope(trx, scope, m.replyTo))) return m.replyTo;
  if (m.unknownReplyTarget === 'ignore') return null;
  throw notFound(`Message to reply to (in this ${what})`, { reply_to_message_id: m.replyTo, ...ids });
}

function toNew(senderId: number, m: MessageInput): NewMessage {
  return { senderId, clientMessageId: m.clientMessageId, type: m.type, body: m.body, mediaUrl: m.mediaUrl, replyTo: m.replyTo };
}

function announce(ctx: AppContext, r: SendResult): void {
  if (r.created) publishEvent(ctx.bus, 'message.created', r.message, eventRoute(r.scope));
}

/** Parses a session context for the send path, with the same errors as `sessionByContext`. */
export function parseContextOrThrow(raw: string): { id: number; kind: SessionKind } {
  const p = parseSessionContext(raw);
  if (p.type === 'session') return { id: p.id, kind: p.kind };
  if (p.type === 'direct') {
    throw new DomainError('SESSION_CONTEXT_REQUIRED', 'direct_session_* is a legacy call routing key, not a session context', { context: raw });
  }
  if (p.type === 'nonexistent') throw notFound('Session', { session_context: raw });
  throw invalid('Not a session context: use text_session:{id} or call_session:{id}', { context: raw });
}

/**
 * Who sends: the verified token's subject, and how to load the full user if the one-statement
 * path does not apply (the route's authentication, which answers 401 for a vanished user).
 */
export interface Sender {
  id: number;
  load: () => Promise<ChatActor>;
}

/**
 * Sends into a session. Tries the one-statement path first (an `active` / `connected` session,
 * where a message changes no state; the user look-up is part of that statement); anything else —
 * a waiting session, a retry, an admin, an error to explain — takes the explicit transaction.
 */
export async function sendToSession(ctx: AppContext, sender: Sender, target: { id: number; kind: SessionKind }, input: MessageInput): Promise<SendResult> {
  validateMessage(input);
  const row = await repo.fastInsertSessionMessage(ctx.database, {
    target: { sessionId: target.id, kind: target.kind },
    senderId: sender.id,
    message: toNew(sender.id, input),
  });
  if (row) return fastResult(ctx, row);
  const actor = await sender.load();
  const s = await sessionByContext(ctx.db, formatSessionContext(target.kind, target.id));
  return sendToSessionLocked(ctx, actor, s.id, input);
}

/** The result of the one-statement path (announced). */
export function fastResult(ctx: AppContext, row: repo.FastInsertRow): SendResult {
  const scope: ChatScope = {
    kind: 'session',
    sessionId: row.session_id,
    sessionKind: row.session_kind,
    status: 'active',
    appointmentId: row.session_appointment_id,
    // The sender is a participant (the statement checked it); only their own side matters here.
    patientId: row.sender_role === 'patient' ? row.sender_id : -1,
    doctorId: row.sender_role === 'doctor' ? row.sender_id : -1,
  };
  const r: SendResult = { message: messageJson(row, scope), created: true, scope };
  announce(ctx, r);
  return r;
}

/** The explicit send path: lock, expire if due, ask the state machine, insert, apply. */
export async function sendToSessionLocked(ctx: AppContext, actor: ChatActor, sessionId: number, input: MessageInput): Promise<SendResult> {
  validateMessage(input);
  const now = ctx.now();
  const timing = timingOf(ctx);
  const r = await ctx.db.transaction().execute(async (trx) => {
    const before = await lockSession(trx, sessionId);
    const party = assertParticipant(actor, before);
    let scope = sessionScope(before);
    if (input.clientMessageId !== null) {
      const existing = await repo.findByClientId(trx, scope, actor.id, input.clientMessageId);
      if (existing) return { kind: 'existing' as const, row: existing, before, after: before };
    }
    const replyTo = await replyTarget(trx, scope, input, 'session', { session_id: before.id });
    let s = before;
    const tick = onTick(s, now, timing);
    if (tick.ok && Object.keys(tick.change).length > 0) s = await writeChange(trx, ctx.sessionHooks, s, tick.change);
    const t = onMessage(s, party, now, timing);
    if (!t.ok) return { kind: 'refused' as const, before, after: s };
    const row = await repo.insertMessage(trx, scope, toNew(actor.id, { ...input, replyTo }));
    if (!row) {
      // A concurrent retry with the same client id won the insert.
      const existing = await repo.findByClientId(trx, scope, actor.id, input.clientMessageId!);
      return { kind: 'existing' as const, row: existing!, before, after: s };
    }
    if (Object.keys(t.change).length > 0) s = await writeChange(trx, ctx.sessionHooks, s, t.change);
    scope = sessionScope(s);
    return { kind: 'created' as const, row, before, after: s };
  });
  publishStatus(ctx, r.before, r.after);
  if (r.kind === 'refused') {
    throw new DomainError('SESSION_NOT_ACTIVE', `The session is ${r.after.status}; no more messages can be sent`, {
      session_id: r.after.id,
      session_context: formatSessionContext(r.after.kind, r.after.id),
      session_status: r.after.status,
    });
  }
  const scope = sessionScope(r.after);
  const name = r.row.sender_id === actor.id ? actor.name : ((await repo.userName(ctx.db, r.row.sender_id)) ?? '');
  const reactions = r.kind === 'existing' ? await repo.reactionsOf(ctx.db, [r.row.id]) : [];
  const result: SendResult = { message: messageJson({ ...r.row, sender_name: name }, scope, reactions), created: r.kind === 'created', scope };
  announce(ctx, result);
  return result;
}

export type AppointmentSendResult = SendResult | { rerouted: true };

/**
 * Pre-session legacy chat (ALLOW_LEGACY_APPOINTMENT_CHAT, no session yet). The appointment row
 * is locked: the session writer locks it too, so a message is either stored before the session
 * exists (and carried into it by the writer) or, if the session won the race, re-routed to it —
 * never left behind. The legacy activity flags the old process-sessions trigger reads are set
 * here.
 */
export async function sendToAppointment(ctx: AppContext, actor: ChatActor, appointmentId: number, input: MessageInput): Promise<AppointmentSendResult> {
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
    const replyTo = await replyTarget(trx, scope, input, 'conversation', { appointment_id: a.id });
    const flag = party === 'patient' ? 'legacy_patient_active' : 'legacy_doctor_active';
    if (!a[flag]) await trx.updateTable('appointments').set({ [flag]: true }).where('id', '=', a.id).execute();
    const row = await repo.insertMessage(trx, scope, toNew(actor.id, { ...input, replyTo }));
    if (!row) return { kind: 'existing' as const, row: (await repo.findByClientId(trx, scope, actor.id, input.clientMessageId!))!, scope };
    return { kind: 'created' as const, row, scope };
  });
  if (r.kind === 'rerouted') return { rerouted: true };
  const name = r.row.sender_id === actor.id ? actor.name : ((await repo.userName(ctx.db, r.row.sender_id)) ?? '');
  const reactions = r.kind === 'existing' ? await repo.reactionsOf(ctx.db, [r.row.id]) : [];
  const result: SendResult = { message: messageJson({ ...r.row, sender_name: name }, r.scope, reactions), created: r.kind === 'created', scope: r.scope };
  announce(ctx, result);
  return result;
}

export interface MessagePage {
  messages: ChatMessageJson[];
  has_more: boolean;
  last_read_message_id: number | null;
  unread_count: number | null;
}

export async function listConversation(ctx: AppContext, actor: ChatActor, scope: ChatScope, page: Partial<Page>): Promise<{ page: MessagePage; rows: MessageWithSender[]; reactions: ReactionRow[] }> {
  const access = assertCanRead(actor, { patient_id: scope.patientId, doctor_id: scope.doctorId });
  const { rows, hasMore } = await repo.listMessages(ctx.db, scope, { before: page.before, after: page.after, limit: page.limit ?? DEFAULT_PAGE });
  const reactions = await repo.reactionsOf(
    ctx.db,
    rows.map((r) => r.id),
  );
  let horizon: number | null = null;
  let unread: number | null = null;
  if (access !== 'admin') {
    horizon = await repo.readHorizon(ctx.db, scope, actor.id);
    unread = await repo.unreadCount(ctx.db, scope, actor.id, horizon);
  }
  return {
    page: { messages: rows.map((r) => messageJson(r, scope, reactions)), has_more: hasMore, last_read_message_id: horizon, unread_count: unread },
    rows,
    reactions,
  };
}

function assertScopeParticipant(actor: ChatActor, scope: ChatScope) {
  return assertParticipant(actor, { patient_id: scope.patientId, doctor_id: scope.doctorId });
}

/** Adds or removes a reaction (participants; idempotent). Allowed after the session ended. */
export async function setReaction(
  ctx: AppContext,
  actor: ChatActor,
  scope: ChatScope,
  messageId: number,
  reaction: string,
  add: boolean,
): Promise<{ changed: boolean; message: MessageWithSender }> {
  assertScopeParticipant(actor, scope);
  validateReaction(reaction);
  const message = await repo.messageInScope(ctx.db, scope, messageId);
  if (!message) throw notFound('Message', { message_id: messageId, ...scopeIds(scope) });
  const changed = add ? await repo.addReaction(ctx.db, messageId, actor.id, reaction) : await repo.removeReaction(ctx.db, messageId, actor.id, reaction);
  if (changed) {
    publishEvent(ctx.bus, add ? 'reaction.added' : 'reaction.removed', { ...scopeIds(scope), message_id: messageId, user_id: actor.id, reaction }, eventRoute(scope));
  }
  return { changed, message };
}

function assertWritable(scope: ChatScope): void {
  if (scope.kind === 'session' && !isLive(scope.status as Session['status'])) {
    throw new DomainError('SESSION_NOT_ACTIVE', `The session is ${scope.status}`, { ...scopeIds(scope), session_status: scope.status });
  }
  if (scope.kind === 'appointment' && !OPEN_APPOINTMENT_STATUSES.has(scope.status)) {
    throw new DomainError('SESSION_NOT_ACTIVE', `The appointment is ${scope.status}`, { appointment_id: scope.appointmentId, appointment_status: scope.status });
  }
}

/** Typing start/stop (participants of a live conversation; ephemeral, throttled). */
export function setTyping(ctx: AppContext, registry: TypingRegistry, actor: ChatActor, scope: ChatScope, typing: boolean) {
  assertScopeParticipant(actor, scope);
  assertWritable(scope);
  const r = registry.set(scopeIds(scope), actor, typing, eventRoute(scope));
  return { typing, expires_at: r.expiresAt ? r.expiresAt.toISOString() : null, throttled: typing && !r.published };
}

export function typingUsers(registry: TypingRegistry, scope: ChatScope) {
  return registry.current(typingKey(scopeIds(scope)));
}

/** Moves the reader's horizon to `messageId` (forward only) and reports the unread count. */
export async function markRead(
  ctx: AppContext,
  actor: ChatActor,
  scope: ChatScope,
  messageId: number,
): Promise<{ last_read_message_id: number; unread_count: number; moved: boolean; previous: number | null }> {
  assertScopeParticipant(actor, scope);
  if (!(await repo.messageInScope(ctx.db, scope, messageId))) throw notFound('Message', { message_id: messageId, ...scopeIds(scope) });
  const previous = await repo.readHorizon(ctx.db, scope, actor.id);
  const moved = await repo.moveReadHorizon(ctx.db, repo.horizonKey(scope), actor.id, messageId);
  const horizon = (await repo.readHorizon(ctx.db, scope, actor.id)) ?? messageId;
  const unread = await repo.unreadCount(ctx.db, scope, actor.id, horizon);
  if (moved) publishEvent(ctx.bus, 'read', { ...scopeIds(scope), user_id: actor.id, last_read_message_id: horizon }, eventRoute(scope));
  return { last_read_message_id: horizon, unread_count: unread, moved, previous };
}

/**
 * Who has read what in a conversation: each participant's read horizon (a message is read by a
 * participant when its id is at or below their horizon) and when it last moved.
 */
export async function readState(ctx: AppContext, actor: ChatActor, scope: ChatScope) {
  assertCanRead(actor, { patient_id: scope.patientId, doctor_id: scope.doctorId });
  const rows = await repo.readHorizons(ctx.db, scope);
  return rows.filter((r) => r.user_id === scope.patientId || r.user_id === scope.doctorId);
}
