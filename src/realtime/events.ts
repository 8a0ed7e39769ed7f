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
import type { ChatMessageJson } from '../modules/chat/schemas.js';

/** Where a chat event happened: a session, or an appointment's pre-session legacy chat. */
export interface ChatScopeIds {
  session_id: number | null;
  session_context: string | null;
  appointment_id: number | null;
}

export interface ReactionEventData extends ChatScopeIds {
  message_id: number;
  user_id: number;
  reaction: string;
}

export interface TypingEventData extends ChatScopeIds {
  user_id: number;
  user_name: string;
  typing: boolean;
  /** When a `typing: true` lapses if no refresh arrives (~8 s); null for `typing: false`. */
  expires_at: string | null;
}

export interface ReadEventData extends ChatScopeIds {
  user_id: number;
  last_read_message_id: number;
}

export interface SessionStatusEventData {
  session_id: number;
  session_context: string;
  status: string;
  previous: string | null;
  end_reason: string | null;
}

export interface CallSignalEventData {
  session_id: number;
  session_context: string;
  from_user_id: number;
  signal: CallSignal;
}

export interface NotificationEventData {
  id: number;
  kind: string;
  payload: unknown;
}

export interface ResyncEventData {
  reason: 'event_bus_reconnected';
  /** When the bus lost its connection: events after this may have been missed. */
  since: string;
}

/** Payload type of each server event. */
export interface ServerEventMap {
  'message.created': ChatMessageJson;
  'reaction.added': ReactionEventData;
  'reaction.removed': ReactionEventData;
  typing: TypingEventData;
  read: ReadEventData;
  'session.status': SessionStatusEventData;
  'call.signal': CallSignalEventData;
  notification: NotificationEventData;
  resync: ResyncEventData;
}

export type ServerEventType = keyof ServerEventMap;
export const SERVER_EVENT_TYPES: readonly ServerEventType[] = [
  'message.created',
  'reaction.added',
  'reaction.removed',
  'typing',
  'read',
  'session.status',
  'call.signal',
  'notification',
  'resync',
];

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
