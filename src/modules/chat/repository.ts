/**
 * Chat storage: messages, reactions and read horizons, as functions of `(db | trx, input)`.
 *
 * A conversation ("scope") is either a session — every message whose `session_id` is the
 * session, including pre-session legacy messages the writer carried in — or, before its session
 * exists, an appointment's legacy chat (`appointment_id` set, `session_id` null). Scopes are
 * typed and namespaced: an id of one kind never addresses another (the original's one id space let users read others' chats).
 *
 * Invariants are constraints: one message per (scope, sender, client_message_id) (partial unique
 * indexes, `ON CONFLICT DO NOTHING`), one reaction per (message, user, emoji) (primary key), a
 * read horizon that only moves forward (conditional upsert).
 */
import { CompiledQuery, sql } from 'kysely';
import { batchedStatement } from '../../db/batch.js';
import { runPrepared, type Database, type PreparedStatement } from '../../db/index.js';
import type { Executor, Message, Session, Trx } from '../../db/types.js';
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

/** The legacy operations a send may be recorded under (the messages' `legacy_operation`). */
export type LegacySendOperation = 'sendMessage' | 'replyToMessage';

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
 * The messages of a scope. A session's are exactly `session_id = ?` — pre-session legacy chat is
 * given the session's id when the session starts (`carryPreSessionChat` in the session writer) —
 * so every read is an index range on `(session_id, id)`, whatever the table's size.
 */
function inScope(scope: ChatScope) {
  if (scope.kind === 'appointment') return sql<boolean>`m.appointment_id = ${scope.appointmentId} and m.session_id is null`;
  return sql<boolean>`m.session_id = ${scope.sessionId}`;
}

/** A session as the send reads it: the row, its version, and what the request refers to. */
export type SendRow = Session & {
  /** The row version (`xmin`): changes with every update of the row, not with a lock. */
  version: string;
  /** The sender's earlier message with this client id (a retry), if any. */
  existing_id: number | null;
  /** Whether the reply target (if any) is a message of this session. */
  reply_ok: boolean;
};

// What a send reads about its session: the row, its version, the sender's earlier message with
// this client id, and whether the reply target is in the session.
const SEND_READ_COLUMNS = `s.*, s.xmin::text as version, e.id as existing_id,
           (t.reply is null or exists (select 1 from messages r where r.id = t.reply and r.session_id = s.id)) as reply_ok`;
const SEND_READ_JOIN = `join sessions s on s.id = t.sid and (t.kind is null or s.kind = t.kind)
      left join messages e on e.session_id = s.id and e.sender_id = t.sender and e.client_message_id = t.cmid`;

// The reads of many sends at once: parallel arrays of session id, kind (null: any), sender id,
// client message id, reply-to id; `n` is each read's position.
const SEND_READ_MANY: PreparedStatement = {
  name: 'chat_send_read_many_v1',
  text: `
    select t.n as read_index, ${SEND_READ_COLUMNS}
      from unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[]) with ordinality as t(sid, kind, sender, cmid, reply, n)
      ${SEND_READ_JOIN}`,
};
// The same read of one send, inside its transaction, taking the session's row lock.
const SEND_READ_LOCKED = `
    select ${SEND_READ_COLUMNS}
      from (select $1::bigint as sid, $2::text as kind, $3::bigint as sender, $4::text as cmid, $5::bigint as reply) as t
      ${SEND_READ_JOIN}
     for update of s`;

type SendReadInput = {
  sessionId: number;
  kind: SessionKind | null;
  senderId: number;
  clientMessageId: string | null;
  replyTo: number | null;
};
const sendReadValues = (i: SendReadInput) => [i.sessionId, i.kind, i.senderId, i.clientMessageId, i.replyTo];

type SendReader = (input: SendReadInput) => Promise<SendRow | undefined>;
const sendReaders = new WeakMap<object, SendReader>();

/**
 * Reads the session a message is sent to, without a lock (the insert checks the version). The
 * sends of one event-loop turn share the statement (src/db/batch.ts), per database.
 */
export function readForSend(database: Pick<Database, 'kind' | 'pool' | 'db'>, input: SendReadInput): Promise<SendRow | undefined> {
  let read = sendReaders.get(database.db);
  if (!read) {
    const loader = batchedStatement<SendReadInput, SendRow | undefined>(async (inputs) => {
      const columns = [0, 1, 2, 3, 4].map((c) => inputs.map((i) => sendReadValues(i)[c]));
      const rows = await runPrepared<SendRow & { read_index: number }>(database, SEND_READ_MANY, columns);
      const byIndex = new Map(rows.map(({ read_index, ...row }) => [Number(read_index), row as SendRow]));
      return inputs.map((_, i) => byIndex.get(i + 1));
    });
    read = (input) => loader.load(input);
    sendReaders.set(database.db, read);
  }
  return read(input);
}

/** The same read inside a transaction, taking the session's row lock. */
export async function lockForSend(trx: Trx, input: SendReadInput): Promise<SendRow | undefined> {
  return (await trx.executeQuery<SendRow>(CompiledQuery.raw(SEND_READ_LOCKED, sendReadValues(input)))).rows[0];
}

// $1 session id, $2 version, $3 sender id, $4 client message id, $5 type, $6 body, $7 media url,
// $8 reply-to id, $9 legacy operation (a would-block legacy send is recorded on its message; see
// the view guard_event_log).
const INSERT_IF_CURRENT: PreparedStatement = {
  name: 'chat_send_insert_v1',
  text: `
    with s as (
      select id from sessions where id = $1::bigint and xmin::text = $2::text for update
    ), ins as (
      insert into messages (session_id, sender_id, client_message_id, type, body, media_url, reply_to_message_id, legacy_operation)
      select s.id, $3::bigint, $4::text, $5::text, $6::text, $7::text, $8::bigint, $9::text from s
          on conflict (session_id, sender_id, client_message_id)
             where session_id is not null and client_message_id is not null
          do nothing
      returning id, session_id, appointment_id, sender_id, client_message_id, type, body, media_url, reply_to_message_id, created_at
    )
    select exists (select 1 from s) as current, ins.*
      from (values (1)) as one (x) left join ins on true`,
};

/**
 * Inserts a message into a session if the session row is still the version its state was decided
 * on: the row lock it takes serialises sends per session, so ids are assigned in commit order
 * within a session (keyset pagination with `after` never skips a message that commits late).
 * `current` false: the session changed since it was read (decide again). `message` undefined with
 * `current` true: a concurrent retry with the same client id won.
 */
export async function insertIfCurrent(
  database: Pick<Database, 'kind' | 'pool' | 'db'>,
  input: { sessionId: number; version: string; message: NewMessage; legacyOperation: LegacySendOperation | null },
): Promise<{ current: boolean; message: Message | undefined }> {
  const m = input.message;
  const [row] = await runPrepared<Message & { current: boolean }>(database, INSERT_IF_CURRENT, [
    input.sessionId,
    input.version,
    m.senderId,
    m.clientMessageId,
    m.type,
    m.body,
    m.mediaUrl,
    m.replyTo,
    input.legacyOperation,
  ]);
  if (!row?.current) return { current: false, message: undefined };
  const { current: _current, ...message } = row;
  return { current: true, message: message.id === null ? undefined : message };
}

export async function insertMessage(
  db: Executor,
  scope: ChatScope,
  m: NewMessage,
  legacyOperation: LegacySendOperation | null = null,
): Promise<Message | undefined> {
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
    insert into messages (session_id, appointment_id, sender_id, client_message_id, type, body, media_url, reply_to_message_id, legacy_operation)
    values (${values.session_id}::bigint, ${values.appointment_id}::bigint, ${values.sender_id}, ${values.client_message_id}, ${values.type},
            ${values.body}, ${values.media_url}, ${values.reply_to_message_id}::bigint, ${legacyOperation}::text)
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

export interface ReadHorizon {
  user_id: number;
  user_name: string;
  last_read_message_id: number;
  read_at: Date;
}

/** Every reader's horizon in the scope (the furthest of its keys), when it last moved, and their name. */
export async function readHorizons(db: Executor, scope: ChatScope): Promise<ReadHorizon[]> {
  const rows = await db
    .selectFrom('read_horizons as h')
    .innerJoin('users as u', 'u.id', 'h.user_id')
    .select((eb) => ['h.user_id', 'u.name', eb.fn.max('h.last_read_message_id').as('last'), eb.fn.max('h.updated_at').as('at')])
    .where('h.scope_key', 'in', horizonKeys(scope))
    .groupBy(['h.user_id', 'u.name'])
    .execute();
  return rows.map((r) => ({
    user_id: r.user_id,
    user_name: r.name,
    last_read_message_id: Number(r.last),
    read_at: new Date(r.at as Date),
  }));
}
