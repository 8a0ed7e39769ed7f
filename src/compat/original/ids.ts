/**
 * The original app's identifier forms mapped onto the core's names.
 *
 * | the app sends                  | where                         | the core's name                                  |
 * |--------------------------------|-------------------------------|--------------------------------------------------|
 * | `12`, `text_session_12`, `text_session:12` | `/text-sessions/{id}` | `text_session:12`                                |
 * | `text_session_12` / `:12`      | `/chat/{id}`                  | `text_session:12` (the session's chat)           |
 * | `57` / `call_session:57`       | `/chat/{id}`, upload `appointment_id` | appointment 57 when the caller is one of its parties, else session 57 (text for a bare number, call for `call_session:`) |
 * | `direct_session_<ms>`          | `/chat/{id}`                  | passed through: the core's guard refuses it      |
 * | `NaN`, anything else           |                               | 404 with a message a person understands          |
 *
 * A bare number is ambiguous in the app (text-session chats put the session id where appointment
 * ids go: media fallbacks, uploads). Laravel tried the appointment first and fell back to the text
 * session; here the appointment wins only when the caller is one of its parties, so a session id
 * that happens to equal a stranger's appointment id still reaches the caller's own session.
 * Participation itself is the core's access gate; this file only picks the name.
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../context.js';
import { Id, IdString } from '../../lib/schemas.js';
import { notFound } from '../../lib/errors.js';
import { accessOf, type Actor } from '../../modules/access.js';
import { getAppointment } from '../../modules/appointments/service.js';
import { formatSessionContext, parsePositiveId, parseSessionContext, type SessionKind } from '../../modules/session-context.js';
import { sessionByContext } from '../../modules/sessions/service.js';

/** The core's `text_session:{id}` for a `/text-sessions/{id}` path id, or a 404 the app can show. */
export function textSessionContext(raw: string): string {
  const id = parsePositiveId(raw);
  if (id !== null) return formatSessionContext('text', id);
  const p = parseSessionContext(raw);
  if (p.type === 'session' && p.kind === 'text') return p.context;
  throw notFound('Text session', { id: raw, reason: 'This chat session could not be found. It may have been removed.' });
}

/** What a `/chat/{id}` (or upload `appointment_id`) names, as the core's legacy-chat `{id}`. */
export type ChatTarget =
  | { type: 'appointment'; id: number; core: string }
  | { type: 'session'; kind: SessionKind; id: number; core: string }
  | { type: 'direct'; core: string };

/** Whether the actor may read a session (exists, is a party or admin) — without throwing. */
async function readableSessionExists(ctx: AppContext, actor: Actor, kind: SessionKind, id: number): Promise<boolean> {
  try {
    const s = await sessionByContext(ctx.db, formatSessionContext(kind, id));
    return accessOf(actor, s) !== null;
  } catch {
    return false;
  }
}

/**
 * Resolves the app's chat id as the table above says. Throws a 404 for ids that name
 * nothing (`NaN`, `undefined`, garbage); the core answers for unknown sessions and appointments.
 * The actor is needed (and loaded) only for bare numbers.
 */
export async function resolveChatTarget(ctx: AppContext, actorOf: Actor | (() => Promise<Actor>), raw: string): Promise<ChatTarget> {
  const p = parseSessionContext(raw);
  if (p.type === 'direct') return { type: 'direct', core: raw };
  if (p.type === 'session' && p.kind === 'text') return { type: 'session', kind: 'text', id: p.id, core: p.context };
  let id: number | null = null;
  let fallback: SessionKind = 'text';
  if (p.type === 'session' && p.kind === 'call') {
    id = p.id;
    fallback = 'call';
  } else {
    id = parsePositiveId(raw);
  }
  if (id === null) {
    throw notFound('Conversation', { id: raw, reason: 'This conversation could not be found. Please go back and open it again.' });
  }
  const actor = typeof actorOf === 'function' ? await actorOf() : actorOf;
  const a = await getAppointment(ctx.db, id);
  if (a && accessOf(actor, a) !== null) return { type: 'appointment', id, core: String(id) };
  if (await readableSessionExists(ctx, actor, fallback, id))
    return { type: 'session', kind: fallback, id, core: formatSessionContext(fallback, id) };
  // Neither is the caller's: let the core answer for the appointment (403) or the session (404).
  return a
    ? { type: 'appointment', id, core: String(id) }
    : { type: 'session', kind: fallback, id, core: formatSessionContext(fallback, id) };
}

/** `text_session_{id}`: the chat route key the app builds from a text session id. */
export const chatRoomId = (sessionId: number) => `text_session_${sessionId}`;

/** An id in a body, as a number or a numeric string. */
export const LooseId = Type.Union([Id, IdString]);
export const idOf = (v: number | string): number => Number(v);
