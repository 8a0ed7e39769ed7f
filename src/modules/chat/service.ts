/**
 * Chat operations on a conversation (a session, or an appointment's pre-session legacy chat):
 * list, react, typing, read, and what a message must be (sending is `send.ts`). The session
 * routes, the legacy routes and the original app's routes all call these; only the addressing
 * and the response shapes differ.
 */
import type { AppContext } from '../../context.js';
import type { Appointment, Message, Session } from '../../db/types.js';
import { DomainError, invalid, notFound } from '../../lib/errors.js';
import { iso } from '../../lib/schemas.js';
import type { AuthUser } from '../../plugins/auth.js';
import { publishEvent, type ChatScopeIds, type EventRoute } from '../../realtime/events.js';
import { assertCanRead, assertParticipant } from '../access.js';
import { formatSessionContext, type SessionKind } from '../session-context.js';
import { isLive } from '../sessions/state.js';
import { checkBody, isAcceptableMediaUrl, isAcceptableReaction, isStorableText } from './content.js';
import * as repo from './repository.js';
import type { ChatScope, MessageWithSender, Page } from './repository.js';
import { DEFAULT_PAGE, type ChatMessageJson, type MessageType } from './schemas.js';
import { typingKey, type TypingRegistry } from './typing.js';

export type ChatActor = Pick<AuthUser, 'id' | 'role' | 'name'>;

/** Appointment statuses in which pre-session legacy chat still accepts writes. */
export const OPEN_APPOINTMENT_STATUSES: ReadonlySet<string> = new Set(['pending', 'confirmed', 'in_progress']);

export function sessionScope(s: Pick<Session, 'id' | 'kind' | 'status' | 'appointment_id' | 'patient_id' | 'doctor_id'>): ChatScope {
  return {
    kind: 'session',
    sessionId: s.id,
    sessionKind: s.kind,
    status: s.status,
    appointmentId: s.appointment_id,
    patientId: s.patient_id,
    doctorId: s.doctor_id,
  };
}

export function appointmentScope(a: Pick<Appointment, 'id' | 'status' | 'patient_id' | 'doctor_id'>): ChatScope {
  return {
    kind: 'appointment',
    sessionId: null,
    sessionKind: null,
    status: a.status,
    appointmentId: a.id,
    patientId: a.patient_id,
    doctorId: a.doctor_id,
  };
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
 * Content rules of a message: text needs visible text and no media; image and voice
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
    throw new DomainError(
      'CONTENT_BLOCKED',
      'Message contains content that is not allowed. Please remove any links, HTML, or scripts and try again.',
      {
        reasons: check.reasons,
      },
    );
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

export interface MessagePage {
  messages: ChatMessageJson[];
  has_more: boolean;
  last_read_message_id: number | null;
  unread_count: number | null;
}

export async function listConversation(
  ctx: AppContext,
  actor: ChatActor,
  scope: ChatScope,
  page: Partial<Page>,
): Promise<{ page: MessagePage; rows: MessageWithSender[]; reactions: ReactionRow[] }> {
  const access = assertCanRead(actor, { patient_id: scope.patientId, doctor_id: scope.doctorId });
  const { rows, hasMore } = await repo.listMessages(ctx.db, scope, {
    before: page.before,
    after: page.after,
    limit: page.limit ?? DEFAULT_PAGE,
  });
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
    page: {
      messages: rows.map((r) => messageJson(r, scope, reactions)),
      has_more: hasMore,
      last_read_message_id: horizon,
      unread_count: unread,
    },
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
  const changed = add
    ? await repo.addReaction(ctx.db, messageId, actor.id, reaction)
    : await repo.removeReaction(ctx.db, messageId, actor.id, reaction);
  if (changed) {
    publishEvent(
      ctx.bus,
      add ? 'reaction.added' : 'reaction.removed',
      { ...scopeIds(scope), message_id: messageId, user_id: actor.id, reaction },
      eventRoute(scope),
    );
  }
  return { changed, message };
}

function assertWritable(scope: ChatScope): void {
  if (scope.kind === 'session' && !isLive(scope.status as Session['status'])) {
    throw new DomainError('SESSION_NOT_ACTIVE', `The session is ${scope.status}`, { ...scopeIds(scope), session_status: scope.status });
  }
  if (scope.kind === 'appointment' && !OPEN_APPOINTMENT_STATUSES.has(scope.status)) {
    throw new DomainError('SESSION_NOT_ACTIVE', `The appointment is ${scope.status}`, {
      appointment_id: scope.appointmentId,
      appointment_status: scope.status,
    });
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
 * participant when its id is at or below their horizon), when it last moved, and their name.
 */
export async function readState(ctx: AppContext, actor: ChatActor, scope: ChatScope): Promise<repo.ReadHorizon[]> {
  assertCanRead(actor, { patient_id: scope.patientId, doctor_id: scope.doctorId });
  const rows = await repo.readHorizons(ctx.db, scope);
  return rows.filter((r) => r.user_id === scope.patientId || r.user_id === scope.doctorId);
}

/** Pages the whole history is read in, and at most how many. */
const HISTORY_PAGE = 500;
const HISTORY_PAGES = 40;

/**
 * The whole conversation, oldest first, with its read state: what a client that keeps no pages
 * (the original app) reads. Participants and admins.
 */
export async function conversationHistory(
  ctx: AppContext,
  actor: ChatActor,
  scope: ChatScope,
): Promise<{ messages: ChatMessageJson[]; horizons: repo.ReadHorizon[] }> {
  assertCanRead(actor, { patient_id: scope.patientId, doctor_id: scope.doctorId });
  const [messages, horizons] = await Promise.all([
    (async () => {
      const all: ChatMessageJson[] = [];
      let after: number | undefined;
      for (let i = 0; i < HISTORY_PAGES; i++) {
        const { rows, hasMore } = await repo.listMessages(ctx.db, scope, { after, limit: HISTORY_PAGE });
        const reactions = await repo.reactionsOf(
          ctx.db,
          rows.map((r) => r.id),
        );
        all.push(...rows.map((r) => messageJson(r, scope, reactions)));
        if (!hasMore || rows.length === 0) break;
        after = rows[rows.length - 1]!.id;
      }
      return all;
    })(),
    readState(ctx, actor, scope),
  ]);
  return { messages, horizons };
}
