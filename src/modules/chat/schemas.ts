/**
 * Chat request and response schemas: the session routes and the legacy
 * appointment routes in the shapes the old mobile clients send and parse.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Id, IdString, IsoDateTime, Literals, MultilineText, NO_CONTROL_PATTERN, Text } from '../../lib/schemas.js';
import { ChatMessageOut, MESSAGE_TYPES } from '../../realtime/events.js';

// The message and its types are the real-time protocol's `message.created` payload, defined with
// the protocol's other events; the REST answers use the same schema.
export { ChatMessageOut, MESSAGE_TYPES, ReactionOut, type ChatMessageJson, type MessageType } from '../../realtime/events.js';

/** Longest body, in Unicode code points (the database CHECK counts the same way). */
export const MAX_BODY_CHARS = 1000;
export const MAX_PAGE = 100;
export const DEFAULT_PAGE = 50;

const Context = Text({ minLength: 1, maxLength: 64, description: 'text_session:{id} or call_session:{id}' });
const ClientMessageId = Text({
  minLength: 1,
  maxLength: 100,
  description: 'Client-chosen id; a retry with the same id returns the stored message',
});
const Body = MultilineText({ maxLength: MAX_BODY_CHARS, description: 'Up to 1000 characters; newlines kept; no HTML, scripts or links' });
const MediaUrl = Text({ minLength: 1, maxLength: 2000, description: 'https:// URL or a same-origin path; required for image and voice' });
const Reaction = Text({ minLength: 1, maxLength: 40, description: 'One emoji (up to 10 characters)' });
// Query strings are strings (no coercion): ids as strict digits, limit 1..100.
const PageLimit = Type.String({ pattern: '^(100|[1-9][0-9]?)$', description: '1 to 100 (default 50)' });

// ---- session routes -----------------------------------------------------------------------

export const ContextParams = Type.Object({ context: Context }, { additionalProperties: false });
export const MessageParams = Type.Object({ context: Context, messageId: IdString }, { additionalProperties: false });
export const ReactionParams = Type.Object({ context: Context, messageId: IdString, reaction: Reaction }, { additionalProperties: false });

// Nullable request fields as JSON-Schema type arrays: the same constraints as a union with null
// (`minLength` only applies to strings, `minimum` only to numbers), checked without trying branches.
const NullableMediaUrl = Type.Unsafe<string | null>({ ...MediaUrl, type: ['string', 'null'] });
const NullableRequestId = Type.Unsafe<number | null>({ ...Id, type: ['integer', 'null'] });

export const SendBody = Type.Object(
  {
    client_message_id: ClientMessageId,
    type: Literals(MESSAGE_TYPES),
    body: Body,
    media_url: Type.Optional(NullableMediaUrl),
    reply_to_message_id: Type.Optional(NullableRequestId),
  },
  { additionalProperties: false },
);
export type SendBody = Static<typeof SendBody>;

export const ListQuery = Type.Object(
  {
    before: Type.Optional(IdString),
    after: Type.Optional(IdString),
    limit: Type.Optional(PageLimit),
  },
  { additionalProperties: false },
);

export const ReactionBody = Type.Object({ reaction: Reaction }, { additionalProperties: false });
export const TypingBody = Type.Object({ typing: Type.Boolean() }, { additionalProperties: false });
export const ReadBody = Type.Object({ message_id: Id }, { additionalProperties: false });

// Response schemas use JSON-Schema type arrays (`["integer", "null"]`) and `enum` rather than
// unions: the serializer writes those directly, where every `anyOf` costs a validation per field
// per response — measurable on the send path, which serialises one message per request.
const NullableId = Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 1 });
const NullableString = Type.Unsafe<string | null>({ type: ['string', 'null'] });
const NullableDate = Type.Unsafe<string | null>({ type: ['string', 'null'], format: 'date-time' });
const Enum = <T extends string>(values: readonly T[]) => Type.Unsafe<T>({ type: 'string', enum: [...values] });


export const MessagePageOut = Type.Object({
  messages: Type.Array(ChatMessageOut),
  /** More messages exist in the direction of the request (older for `before`/latest, newer for `after`). */
  has_more: Type.Boolean(),
  /** The caller's read horizon and unread count (null for admins, who have none). */
  last_read_message_id: NullableId,
  unread_count: Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 0 }),
});

export const ReactionResultOut = Type.Object({
  message_id: Id,
  reaction: Type.String(),
  user_id: Id,
  /** add: false when the reaction was already there; remove: false when it was not. */
  changed: Type.Boolean(),
});

export const TypingOut = Type.Object({
  typing: Type.Boolean(),
  expires_at: NullableDate,
  /** True when a repeated `typing: true` within the throttle window was not re-broadcast. */
  throttled: Type.Boolean(),
});

export const ReadOut = Type.Object({
  last_read_message_id: Id,
  unread_count: Type.Integer({ minimum: 0 }),
  /** False when the horizon was already at or past `message_id` (it only moves forward). */
  moved: Type.Boolean(),
});

// ---- legacy routes (/api/v2/chat/{id}/…) -----------------------------------------------------

export const LegacyParams = Type.Object(
  { id: Text({ minLength: 1, maxLength: 64, description: 'Appointment id, or a session context (text_session_12)' }) },
  { additionalProperties: false },
);
export const LegacyMessageParams = Type.Object({ id: LegacyParams.properties.id, messageId: IdString }, { additionalProperties: false });

// Old clients send numbers or strings as temp ids (Date.now() or a uuid), or null. Three types
// are a union (anyOf) — Ajv's strict mode only accepts a type array for "T or null".
const TempId = Type.Union(
  [
    Type.String({ minLength: 1, maxLength: 100, pattern: NO_CONTROL_PATTERN }),
    Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    Type.Null(),
  ],
  { description: 'The client id of the message (string or number): a retry with it returns the stored message' },
);

export const LegacySendBody = Type.Object(
  {
    message: Body,
    message_type: Type.Optional(Literals(MESSAGE_TYPES)),
    media_url: Type.Optional(NullableMediaUrl),
    temp_id: Type.Optional(TempId),
    /** Old clients' own message id: used only as the idempotency key when `temp_id` is absent. */
    message_id: Type.Optional(TempId),
  },
  { additionalProperties: false },
);
export type LegacySendBody = Static<typeof LegacySendBody>;

export const LegacyListQuery = Type.Object(
  {
    before: Type.Optional(IdString),
    after: Type.Optional(IdString),
    limit: Type.Optional(PageLimit),
    /** Sent by the old signalling server; ignored (as it was). */
    since: Type.Optional(Text({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

export const LegacyReactionBody = Type.Object({ reaction: Reaction }, { additionalProperties: false });
export const LegacyReactionQuery = Type.Object({ reaction: Type.Optional(Reaction) }, { additionalProperties: false });
export const LegacyOptionalReactionBody = Type.Union([
  Type.Object({ reaction: Type.Optional(Reaction) }, { additionalProperties: false }),
  Type.Null(),
]);

export const LegacyMarkReadBody = Type.Union([
  Type.Object(
    {
      /** Ignored: the reader is the authenticated user, never a body field (the original system trusted this one). */
      user_id: Type.Optional(Type.Union([Type.Integer(), Text({ maxLength: 32 })])),
      timestamp: Type.Optional(Text({ maxLength: 64 })),
    },
    { additionalProperties: false },
  ),
  Type.Null(),
]);

/** Old clients send `{}` or small objects with typing start/stop; nothing in them is used. */
export const LegacyTypingBody = Type.Union([Type.Object({}, { additionalProperties: true, maxProperties: 10 }), Type.Null()]);

export const LegacyReactionOut = Type.Object({
  reaction: Type.String(),
  user_id: Id,
  user_name: Type.String(),
  timestamp: IsoDateTime,
});

export const LegacyMessageOut = Type.Object({
  id: Id,
  appointment_id: NullableId,
  session_id: NullableId,
  session_context: NullableString,
  sender_id: Id,
  sender_name: Type.String(),
  message: Type.String(),
  message_type: Enum(MESSAGE_TYPES),
  media_url: NullableString,
  temp_id: NullableString,
  reply_to_id: NullableId,
  reactions: Type.Array(LegacyReactionOut),
  created_at: IsoDateTime,
  timestamp: IsoDateTime,
});
export type LegacyMessageJson = Static<typeof LegacyMessageOut>;

export const LegacyReplyOut = Type.Object({
  success: Type.Literal(true),
  message: Type.String(),
  data: Type.Intersect([
    LegacyMessageOut,
    Type.Object({
      reply_to_message: NullableString,
      reply_to_sender_name: NullableString,
      read_by: Type.Array(Type.Object({ user_id: Id, read_at: IsoDateTime })),
    }),
  ]),
});

const Inner = <T extends Parameters<typeof Type.Object>[0]>(props: T) =>
  Type.Object({ success: Type.Boolean(), message: Type.String(), ...props });

export const LegacyReactionResultOut = Inner({ reaction: Type.Optional(LegacyReactionOut) });
export const LegacyTypingOut = Inner({
  typing_users: Type.Array(Type.Object({ user_id: Id, user_name: Type.String(), started_at: IsoDateTime })),
});
export const LegacyMarkReadOut = Inner({ marked_count: Type.Integer({ minimum: 0 }), last_read_message_id: NullableId });
