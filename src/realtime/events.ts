/**
 * The WebSocket protocol at `/api/v2/ws`: typed server events, control frames and client messages.
 *
 * Every frame is one JSON object with a `type`.
 *
 * Server → client events (`{type, data}`), delivered to the connections subscribed to the event's
 * session, or — when the publisher addressed users (`userIds`) — to those users' connections:
 *   message.created, reaction.added, reaction.removed, typing, read, session.status,
 *   call.signal, notification; and `resync` ({reason, since}) to every connection when this
 *   server may have missed events from other processes (its event-bus connection was lost and is
 *   back): re-read what you show (`GET …/messages?after=<last id>`, notifications, session state).
 * Server → client control frames: `ready` (after the handshake), `subscribed`, `unsubscribed`,
 *   `ack` (typing / call.signal accepted), `pong`, `error` (`{error_code, message, ref}`).
 * Client → server messages: `subscribe`, `unsubscribe`, `typing`, `call.signal`, `ping`; each may
 *   carry a `ref` (string or number) that the server echoes in its answer.
 */
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { BusEvent, EventBus } from './bus.js';
import { Id, IsoDateTime } from '../lib/schemas.js';

const NullableId = Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);

export const MESSAGE_TYPES = ['text', 'image', 'voice'] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

// The message is also a REST answer: JSON-Schema type arrays and `enum` rather than unions, which
// the serializer writes directly (an `anyOf` costs a validation per field per response).
const NullableIdOut = Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 1 });
const NullableStringOut = Type.Unsafe<string | null>({ type: ['string', 'null'] });
const EnumOut = <T extends string>(values: readonly T[]) => Type.Unsafe<T>({ type: 'string', enum: [...values] });

export const ReactionOut = Type.Object({ reaction: Type.String(), user_id: Id });

export const ChatMessageOut = Type.Object({
  id: Id,
  session_id: NullableIdOut,
  session_context: NullableStringOut,
  appointment_id: NullableIdOut,
  sender_id: Id,
  sender_name: Type.String(),
  sender_role: EnumOut(['patient', 'doctor'] as const),
  client_message_id: NullableStringOut,
  type: EnumOut(MESSAGE_TYPES),
  body: Type.String(),
  media_url: NullableStringOut,
  reply_to_message_id: NullableIdOut,
  reactions: Type.Array(ReactionOut),
  created_at: IsoDateTime,
});
export type ChatMessageJson = Static<typeof ChatMessageOut>;

/** Where a chat event happened: a session, or an appointment's pre-session legacy chat. */
export const ChatScopeIdsSchema = Type.Object({ session_id: NullableId, session_context: NullableString, appointment_id: NullableId });
export type ChatScopeIds = Static<typeof ChatScopeIdsSchema>;

export const ReactionEventSchema = Type.Composite([
  ChatScopeIdsSchema,
  Type.Object({ message_id: Type.Integer(), user_id: Type.Integer(), reaction: Type.String() }),
]);
export type ReactionEventData = Static<typeof ReactionEventSchema>;

export const TypingEventSchema = Type.Composite([
  ChatScopeIdsSchema,
  Type.Object({
    user_id: Type.Integer(),
    user_name: Type.String(),
    typing: Type.Boolean(),
    expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: 'When a `typing: true` lapses if no refresh arrives (~8 s); null for `typing: false`',
    }),
  }),
]);
export type TypingEventData = Static<typeof TypingEventSchema>;

export const ReadEventSchema = Type.Composite([
  ChatScopeIdsSchema,
  Type.Object({ user_id: Type.Integer(), last_read_message_id: Type.Integer() }),
]);
export type ReadEventData = Static<typeof ReadEventSchema>;

export const SessionStatusEventSchema = Type.Object({
  session_id: Type.Integer(),
  session_context: Type.String(),
  status: Type.String(),
  previous: NullableString,
  end_reason: NullableString,
});
export type SessionStatusEventData = Static<typeof SessionStatusEventSchema>;

const Ref = Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Integer()]));
const Context = Type.String({ minLength: 1, maxLength: 64 });

export const CallSignalSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('offer'), Type.Literal('answer'), Type.Literal('ice')]),
    sdp: Type.Optional(Type.String({ maxLength: 32_000 })),
    candidate: Type.Optional(Type.Unknown()),
    sdpMid: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
    sdpMLineIndex: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 1000 }), Type.Null()])),
  },
  { additionalProperties: false },
);
export type CallSignal = Static<typeof CallSignalSchema>;

export const CallSignalEventSchema = Type.Object({
  session_id: Type.Integer(),
  session_context: Type.String(),
  from_user_id: Type.Integer(),
  signal: CallSignalSchema,
});
export type CallSignalEventData = Static<typeof CallSignalEventSchema>;

export const NotificationEventSchema = Type.Object({ id: Type.Integer(), kind: Type.String(), payload: Type.Unknown() });
export type NotificationEventData = Static<typeof NotificationEventSchema>;

export const ResyncEventSchema = Type.Object({
  reason: Type.Literal('event_bus_reconnected'),
  since: Type.String({ format: 'date-time', description: 'When the bus lost its connection: events after this may have been missed' }),
});
export type ResyncEventData = Static<typeof ResyncEventSchema>;

/** The payload schema of each server event: the protocol's document is generated from these. */
export const ServerEventSchemas = {
  'message.created': ChatMessageOut,
  'reaction.added': ReactionEventSchema,
  'reaction.removed': ReactionEventSchema,
  typing: TypingEventSchema,
  read: ReadEventSchema,
  'session.status': SessionStatusEventSchema,
  'call.signal': CallSignalEventSchema,
  notification: NotificationEventSchema,
  resync: ResyncEventSchema,
} as const;

/** Payload type of each server event. */
export type ServerEventMap = { [K in keyof typeof ServerEventSchemas]: Static<(typeof ServerEventSchemas)[K]> };

export type ServerEventType = keyof ServerEventMap;
export const SERVER_EVENT_TYPES = Object.keys(ServerEventSchemas) as ServerEventType[];

/** A server event as sent on the socket. */
export type ServerEvent = { [K in ServerEventType]: { type: K; data: ServerEventMap[K] } }[ServerEventType];

/** Routing of a published event: a session's subscribers, or exactly these users. */
export interface EventRoute {
  sessionId?: number;
  userIds?: number[];
}

/** Publishes a typed event on the bus (after commit; never awaited by request handlers). */
export function publishEvent<K extends ServerEventType>(bus: EventBus, type: K, data: ServerEventMap[K], route: EventRoute): void {
  const event: BusEvent = { type, payload: data };
  if (route.sessionId !== undefined) event.sessionId = route.sessionId;
  if (route.userIds !== undefined) event.userIds = route.userIds;
  void bus.publish(event).catch(() => {});
}

// ---- client messages ----------------------------------------------------------------------

export const ClientMessageSchema = Type.Union([
  Type.Object({ type: Type.Literal('subscribe'), session_context: Context, ref: Ref }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('unsubscribe'), session_context: Context, ref: Ref }, { additionalProperties: false }),
  Type.Object(
    { type: Type.Literal('typing'), session_context: Context, typing: Type.Boolean(), ref: Ref },
    { additionalProperties: false },
  ),
  Type.Object(
    { type: Type.Literal('call.signal'), session_context: Context, signal: CallSignalSchema, ref: Ref },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('ping'), ref: Ref }, { additionalProperties: false }),
]);
export type ClientMessage = Static<typeof ClientMessageSchema>;

/** The server's control frames (answers to client messages), for the protocol's document. */
export const ControlFrameSchemas = {
  ready: Type.Object({ type: Type.Literal('ready'), user_id: Type.Integer(), role: Type.String(), heartbeat_ms: Type.Integer() }),
  subscribed: Type.Object({
    type: Type.Literal('subscribed'),
    session_context: Type.String(),
    session_id: Type.Integer(),
    session_status: Type.String(),
    access: Type.String(),
    ref: Ref,
  }),
  unsubscribed: Type.Object({ type: Type.Literal('unsubscribed'), session_context: Type.String(), session_id: Type.Integer(), ref: Ref }),
  ack: Type.Object(
    { type: Type.Literal('ack'), of: Type.String(), session_context: Type.String(), ref: Ref },
    { additionalProperties: true },
  ),
  pong: Type.Object({ type: Type.Literal('pong'), ref: Ref }),
  error: Type.Object(
    { type: Type.Literal('error'), error_code: Type.String(), message: Type.String(), ref: Ref },
    { additionalProperties: true },
  ),
} as const;

const clientMessageCheck = TypeCompiler.Compile(ClientMessageSchema);

/**
 * Parses one client frame. On failure, `ref` is the frame's `ref` if it had a usable one, so the
 * client can match the error to its request.
 */
export function parseClientMessage(text: string): { ok: true; message: ClientMessage } | { ok: false; ref?: string | number } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false };
  }
  if (clientMessageCheck.Check(value)) return { ok: true, message: value };
  const ref = value && typeof value === 'object' && 'ref' in value ? (value as { ref: unknown }).ref : undefined;
  return typeof ref === 'string' && ref.length <= 64
    ? { ok: false, ref }
    : Number.isSafeInteger(ref)
      ? { ok: false, ref: ref as number }
      : { ok: false };
}
