/**
 * Chat storage: messages, reactions and read horizons, as functions of `(db | trx, input)`.
 *
 * A conversation ("scope") is either a session — every message whose `session_id` is the
 * session, including pre-session legacy messages the writer carried in — or, before its session
 * exists, an appointment's legacy chat (`appointment_id` set, `session_id` null). Scopes are
 * typed and namespaced: an id of one kind never addresses another (reference §7 bug 15).
 *
 * Invariants are constraints: one message per (scope, sender, client_message_id) (partial unique
 * indexes, `ON CONFLICT DO NOTHING`), one reaction per (message, user, emoji) (primary key), a
 * read horizon that only moves forward (conditional upsert).
 */
import { sql } from 'kysely';
import { runPrepared, type Database, type PreparedStatement } from '../../db/index.js';
import type { Executor, Message, Role } from '../../db/types.js';
import type { SessionKind } from '../session-context.js';
import type { MessageType } from './schemas.js';

export interface ChatScope {
  kind: 'session' | 'appointment';
  sessionId: number | null;
  sessionKind: SessionKind | null;
  /** The session's status (session scope) or the appointment's (appointment scope). */
  status: string;
  appointmentId: number | null;
  patientId: number;
  doctorId: number;
}

/** A message with its sender's name, as lists and the send path return it. */
export interface MessageWithSender extends Message {
  sender_name: string;
}

export interface NewMessage {
  senderId: number;
  clientMessageId: string | null;
  type: MessageType;
  body: string;
  mediaUrl: string | null;
  replyTo: number | null;
}

/** The read-horizon key(s) of a scope: a session also honours its appointment's pre-session horizon. */
export function horizonKeys(scope: ChatScope): string[] {
  const keys: string[] = [];
  if (scope.sessionId !== null) keys.push(`session:${scope.sessionId}`);
  if (scope.appointmentId !== null) keys.push(`appointment:${scope.appointmentId}`);
  return keys;
}

/** The key a participant's horizon is written under. */
export const horizonKey = (scope: ChatScope) =>
  scope.kind === 'session' ? `session:${scope.sessionId}` : `appointment:${scope.appointmentId}`;

const MESSAGE_COLUMNS = [
  'm.id',
  'm.session_id',
  'm.appointment_id',
  'm.sender_id',
  'm.client_message_id',
  'm.type',
  'm.body',
  'm.media_url',
  'm.reply_to_message_id',
  'm.created_at',
] as const;

/**
 * The messages of a scope. A session's history also includes pre-session messages of its
 * appointment that were never linked: the writer links them when it creates the session, but it
 * does so in the statement that takes the appointment lock, whose snapshot predates a pre-session
 * send that held that lock — such a message (committed a moment before the session) would
 * otherwise fall out of both conversations.
 */
/**
 * The messages of a scope. A session's are exactly `session_id = ?` — pre-session legacy chat is
 * given the session's id when the session starts (`carryPreSessionChat` in the session writer) —
 * so every read is an index range on `(session_id, id)`, whatever the table's size.
 */
function inScope(scope: ChatScope) {
  if (scope.kind === 'appointment') return sql<boolean>`m.appointment_id = ${scope.appointmentId} and m.session_id is null`;
  return sql<boolean>`m.session_id = ${scope.sessionId}`;
}

/** What the one-statement send returns: the message, its session, and the sender as loaded. */
export type FastInsertRow = Message & {
  session_kind: SessionKind;
  session_appointment_id: number | null;
  sender_name: string;
  sender_role: Role;
};

/**
 * The hot path of a session send, in ONE statement (its own transaction): load the sender (the
 * request's only user look-up — the token was verified, the user row decides the role), lock the
 * session row, insert the message if the session is in a state where a message changes nothing
 * (text `active`, call `connected`), the sender is one of its participants and the reply target
 * (if any) is in the same session, and — on the legacy guarded route — mark the message with the
 * legacy operation, which is its would-block guard event (the view `guard_event_log`).
 * The row lock serialises sends per session, so ids are assigned in commit order within a session
 * (keyset pagination with `after` never skips a message that commits late).
 *
 * On PostgreSQL it runs as a named prepared statement: planning this CTE costs more than
 * executing it (measured: twice the throughput prepared), and it runs once per message.
 *
 * Returns null when nothing was inserted, for any reason (unknown user or session, other state,
 * not a participant, bad reply target, a retried client id): the caller then takes the explicit
 * path, which decides the precise answer.
 */
export async function fastInsertSessionMessage(
  database: Pick<Database, 'kind' | 'pool' | 'db'>,
  input: {
    target: { sessionId: number; kind: SessionKind } | { appointmentId: number; operation: string };
    senderId: number;
    message: Omit<NewMessage, 'senderId'>;
  },
): Promise<FastInsertRow | null> {
  const { target, senderId, message: m } = input;
  const bySession = 'sessionId' in target;
  const statement = bySession ? FAST_SEND_BY_SESSION : FAST_SEND_BY_APPOINTMENT;
  const values: unknown[] = [senderId, m.clientMessageId, m.type, m.body, m.mediaUrl, m.replyTo];
  if (bySession) values.push(target.sessionId, target.kind);
  else values.push(target.appointmentId, target.operation);
  const rows = await runPrepared<FastInsertRow>(database, statement, values);
  return rows[0] ?? null;
}

// $1 sender id, $2 client message id, $3 type, $4 body, $5 media url, $6 reply-to id, then
// by session: $7 session id, $8 kind; by appointment: $7 appointment id, $8 the legacy operation,
// stored on the message as its would-block guard event (see the view guard_event_log).
const fastSendSql = (targetWhere: string, legacyOperation: string) => `
    with u as (
      select id, role, name from users where id = $1 and deactivated_at is null
    ), target as (
      select s.id, s.kind, s.status, s.patient_id, s.doctor_id, s.appointment_id
        from sessions s
       where ${targetWhere}
         for update
    ), ins as (
      insert into messages (session_id, sender_id, client_message_id, type, body, media_url, reply_to_message_id, legacy_operation)
      select t.id, u.id, $2::text, $3::text, $4::text, $5::text, $6::bigint, ${legacyOperation}
        from target t cross join u
       where t.status in ('active', 'connected')
         and ((u.role = 'patient' and t.patient_id = u.id) or (u.role = 'doctor' and t.doctor_id = u.id))
         and ($6::bigint is null or exists (select 1 from messages r where r.id = $6::bigint and r.session_id = t.id))
          on conflict (session_id, sender_id, client_message_id)
             where session_id is not null and client_message_id is not null
          do nothing
      returning id, session_id, appointment_id, sender_id, client_message_id, type, body, media_url, reply_to_message_id, created_at
    )
    select ins.*, t.kind as session_kind, t.appointment_id as session_appointment_id, u.name as sender_name, u.role as sender_role
      from ins cross join target t cross join u`;

const FAST_SEND_BY_SESSION: PreparedStatement = {
  name: 'chat_fast_send_by_session_v3',
  text: fastSendSql('s.id = $7::bigint and s.kind = $8::text', 'null'),
};
const FAST_SEND_BY_APPOINTMENT: PreparedStatement = {
  name: 'chat_fast_send_by_appointment_v3',
  text: fastSendSql('s.id = (select a.session_id from appointments a where a.id = $7::bigint)', '$8::text'),
};

export async function insertMessage(db: Executor, scope: ChatScope, m: NewMessage): Promise<Message | undefined> {
  const values = {
    session_id: scope.kind === 'session' ? scope.sessionId : null,
    appointment_id: scope.kind === 'appointment' ? scope.appointmentId : null,
    sender_id: m.senderId,
    client_message_id: m.clientMessageId,
    type: m.type,
    body: m.body,
    media_url: m.mediaUrl,
    reply_to_message_id: m.replyTo,
  };
  const conflict =
    scope.kind === 'session'
      ? sql`on conflict (session_id, sender_id, client_message_id) where session_id is not null and client_message_id is not null do nothing`
      : sql`on conflict (appointment_id, sender_id, client_message_id) where session_id is null and client_message_id is not null do nothing`;
  const r = await sql<Message>`
    insert into messages (session_id, appointment_id, sender_id, client_message_id, type, body, media_url, reply_to_message_id)
    values (${values.session_id}::bigint, ${values.appointment_id}::bigint, ${values.sender_id}, ${values.client_message_id}, ${values.type},
            ${values.body}, ${values.media_url}, ${values.reply_to_message_id}::bigint)
    ${conflict}
    returning id, session_id, appointment_id, sender_id, client_message_id, type, body, media_url, reply_to_message_id, created_at`.execute(
    db,
  );
  return r.rows[0];
}

/** The sender's earlier message with this client id in the scope (a retry). */
export async function findByClientId(
  db: Executor,
  scope: ChatScope,
  senderId: number,
  clientMessageId: string,
): Promise<Message | undefined> {
  return db
    .selectFrom('messages as m')
    .select(MESSAGE_COLUMNS)
    .where(inScope(scope))
    .where('m.sender_id', '=', senderId)
    .where('m.client_message_id', '=', clientMessageId)
    .executeTakeFirst();
}

/** A message of this scope (a reply target, a reaction target, a read mark), else undefined. */
export async function messageInScope(db: Executor, scope: ChatScope, id: number): Promise<MessageWithSender | undefined> {
  return db
    .selectFrom('messages as m')
    .innerJoin('users as u', 'u.id', 'm.sender_id')
    .select([...MESSAGE_COLUMNS, 'u.name as sender_name'])
    .where('m.id', '=', id)
    .where(inScope(scope))
    .executeTakeFirst();
}

export interface Page {
  before?: number;
  after?: number;
  limit: number;
}

/**
 * Keyset pagination by message id, always returned oldest first:
 * - `after`: the first `limit` messages with id > after (bounded by `before` if both are given);
 * - otherwise the last `limit` messages with id < before (or the newest, without a cursor).
 * One extra row is read to tell `has_more` in the direction of the request.
 */
export async function listMessages(db: Executor, scope: ChatScope, page: Page): Promise<{ rows: MessageWithSender[]; hasMore: boolean }> {
  let q = db
    .selectFrom('messages as m')
    .innerJoin('users as u', 'u.id', 'm.sender_id')
    .select([...MESSAGE_COLUMNS, 'u.name as sender_name'])
    .where(inScope(scope));
  if (page.before !== undefined) q = q.where('m.id', '<', page.before);
  if (page.after !== undefined) q = q.where('m.id', '>', page.after);
  const forward = page.after !== undefined;
  const rows = await q
    .orderBy('m.id', forward ? 'asc' : 'desc')
    .limit(page.limit + 1)
    .execute();
  const hasMore = rows.length > page.limit;
  const pageRows = rows.slice(0, page.limit);
  if (!forward) pageRows.reverse();
  return { rows: pageRows, hasMore };
}

/** Reactions of the given messages, oldest first. */
export async function reactionsOf(
  db: Executor,
  messageIds: number[],
): Promise<{ message_id: number; user_id: number; emoji: string; created_at: Date; user_name: string }[]> {
  if (messageIds.length === 0) return [];
  return db
    .selectFrom('message_reactions as r')
    .innerJoin('users as u', 'u.id', 'r.user_id')
    .select(['r.message_id', 'r.user_id', 'r.emoji', 'r.created_at', 'u.name as user_name'])
    .where('r.message_id', 'in', messageIds)
    .orderBy('r.created_at')
    .orderBy('r.user_id')
    .execute();
}

/** Adds a reaction; false when the same user already had this emoji on the message. */
export async function addReaction(db: Executor, messageId: number, userId: number, emoji: string): Promise<boolean> {
  const r = await db
    .insertInto('message_reactions')
    .values({ message_id: messageId, user_id: userId, emoji })
    .onConflict((oc) => oc.columns(['message_id', 'user_id', 'emoji']).doNothing())
    .returning('message_id')
    .executeTakeFirst();
  return r !== undefined;
}

/** Removes a reaction; false when there was none. */
export async function removeReaction(db: Executor, messageId: number, userId: number, emoji: string): Promise<boolean> {
  const r = await db
    .deleteFrom('message_reactions')
    .where('message_id', '=', messageId)
    .where('user_id', '=', userId)
    .where('emoji', '=', emoji)
    .returning('message_id')
    .executeTakeFirst();
  return r !== undefined;
}

/**
 * Moves a participant's read horizon to `messageId` if that is further than where it is: one
 * conditional upsert, so concurrent marks (two devices) can only move it forward.
 */
export async function moveReadHorizon(db: Executor, key: string, userId: number, messageId: number): Promise<boolean> {
  const r = await sql<{ user_id: number }>`
    insert into read_horizons (scope_key, user_id, last_read_message_id)
    values (${key}, ${userId}, ${messageId})
        on conflict (scope_key, user_id) do update
       set last_read_message_id = excluded.last_read_message_id, updated_at = now()
     where read_horizons.last_read_message_id < excluded.last_read_message_id
    returning user_id`.execute(db);
  return r.rows.length > 0;
}

/** The user's horizon in the scope (the furthest of its keys), or null when they never read. */
export async function readHorizon(db: Executor, scope: ChatScope, userId: number): Promise<number | null> {
  const r = await db
    .selectFrom('read_horizons')
    .select((eb) => eb.fn.max('last_read_message_id').as('h'))
    .where('scope_key', 'in', horizonKeys(scope))
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return r?.h == null ? null : Number(r.h);
}

/** Messages from the other participant after the horizon: derived, never stored. */
export async function unreadCount(db: Executor, scope: ChatScope, userId: number, horizon: number | null): Promise<number> {
  let q = db
    .selectFrom('messages as m')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where(inScope(scope))
    .where('m.sender_id', '<>', userId);
  if (horizon !== null) q = q.where('m.id', '>', horizon);
  const r = await q.executeTakeFirstOrThrow();
  return Number(r.n);
}

/** The newest message of the scope (created at or before `at`, if given). */
export async function latestMessageId(db: Executor, scope: ChatScope, at?: Date): Promise<number | null> {
  let q = db.selectFrom('messages as m').select('m.id').where(inScope(scope));
  if (at) q = q.where('m.created_at', '<=', at);
  const r = await q.orderBy('m.id', 'desc').limit(1).executeTakeFirst();
  return r?.id ?? null;
}

/** Legacy mark-read: how many of the other party's messages lie in (from, to]. */
export async function countFromOthersBetween(
  db: Executor,
  scope: ChatScope,
  userId: number,
  from: number | null,
  to: number,
): Promise<number> {
  let q = db
    .selectFrom('messages as m')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where(inScope(scope))
    .where('m.sender_id', '<>', userId)
    .where('m.id', '<=', to);
  if (from !== null) q = q.where('m.id', '>', from);
  return Number((await q.executeTakeFirstOrThrow()).n);
}

/** Names of users by id (typing lists, reply previews). */
export async function userName(db: Executor, id: number): Promise<string | null> {
  const r = await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst();
  return r?.name ?? null;
}

/** Every participant's read horizon in the scope (the furthest of its keys) and when it last moved. */
export async function readHorizons(
  db: Executor,
  scope: ChatScope,
): Promise<{ user_id: number; last_read_message_id: number; read_at: Date }[]> {
  const rows = await db
    .selectFrom('read_horizons')
    .select((eb) => ['user_id', eb.fn.max('last_read_message_id').as('h'), eb.fn.max('updated_at').as('at')])
    .where('scope_key', 'in', horizonKeys(scope))
    .groupBy('user_id')
    .execute();
  return rows.map((r) => ({ user_id: r.user_id, last_read_message_id: Number(r.h), read_at: new Date(r.at as Date) }));
}
