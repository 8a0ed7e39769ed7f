/**
 * The original app's socket frames: what a core event reads as on an app socket,
 * the message a `chat-message` frame carries, and the frames relayed between the two parties.
 * Pure mapping: who may receive what is decided by the socket hub before these run.
 */
import type { Session } from '../../db/types.js';
import { invalid } from '../../lib/errors.js';
import type { ChatMessageJson } from '../../modules/chat/schemas.js';
import type { MessageInput } from '../../modules/chat/service.js';
import { parsePositiveId } from '../../modules/session-context.js';
import { isLive } from '../../modules/sessions/state.js';
import type { BusEvent } from '../../realtime/bus.js';
import type { CallSignalEventData, ReadEventData, SessionStatusEventData, TypingEventData } from '../../realtime/events.js';
import { appCallStatus } from './call-shapes.js';
import { appMessageJson } from './chat-shapes.js';
import type { Target } from './signaling-target.js';

export type PathKind = 'chat' | 'call' | 'notifications';

/** What the server knows of an app socket beyond its user. */
export interface AppSocketState {
  /** The user was proven by a verified token; a token-less call socket was not. */
  verified: boolean;
  path: PathKind;
  /** `appointmentId` as this socket sent it: echoed in the frames it receives. */
  label: string;
  /** What `appointmentId` names; null on the notifications path. */
  target: Target | null;
}

type Frame = Record<string, unknown>;

/** Call signalling frames: relayed to the other participant, also from token-less call sockets. */
export const CALL_FRAMES = new Set([
  'offer',
  'answer',
  'ice-candidate',
  'call-answered',
  'call-rejected',
  'call-ended',
  'resend-offer-request',
]);
/** Call frames that announce the end of a call: relayed also once the call stopped being live. */
export const CALL_END_FRAMES = new Set(['call-ended', 'call-rejected']);
/** Frame types counted in `websocket_events_sent_total` under their own name (others: `other`). */
const KNOWN_OUT = new Set([
  ...CALL_FRAMES,
  'connection-established',
  'notification-connection-established',
  'chat-message',
  'typing-indicator',
  'read-receipt',
  'delivery-status',
  'session-ended',
  'session-activated',
  'session-expired',
  'session-status-response',
  'pong',
  'error',
]);
export const metricLabel = (type: string) => (KNOWN_OUT.has(type) ? type : 'other');

/** Bus event carrying a relayed app frame between processes; not part of the /api/v2/ws protocol. */
export const RELAY_EVENT = 'original.relay';

export interface RelayPayload {
  session_id: number | null;
  appointment_id: number | null;
  from_user_id: number;
  /** Delivered to token-less call sockets too. */
  call: boolean;
  frame: Frame;
}

/** A frame relayed from `from` in `t` to the other party; identity fields are the server's. */
export function relayEvent(t: Target, from: number, frame: Frame, call: boolean): BusEvent {
  const { sessionId, appointmentId, patientId, doctorId } = t.scope;
  const payload: RelayPayload = {
    session_id: sessionId,
    appointment_id: appointmentId,
    from_user_id: from,
    call,
    frame: { ...frame, senderId: from, userId: from, timestamp: new Date().toISOString() },
  };
  // Routed like the chat events of the same conversation: a session's, or both parties'.
  return sessionId !== null ? { type: RELAY_EVENT, sessionId, payload } : { type: RELAY_EVENT, userIds: [patientId, doctorId], payload };
}

/** Is an event of this session / appointment about the socket's target? */
function about(t: Target, sessionId: number | null | undefined, appointmentId: number | null | undefined): boolean {
  if (t.scope.sessionId !== null) return sessionId === t.scope.sessionId;
  return appointmentId !== null && appointmentId !== undefined && appointmentId === t.scope.appointmentId;
}

const str = (v: unknown, max: number): string | null => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : null);

/**
 * The frames a core event becomes on one app socket of user `userId` (the socket hub has checked
 * that the user may receive it), and whether the socket must close. Keeps the socket's target
 * current: an appointment's socket learns its session from the first message that names both,
 * and a session's status from `session.status`.
 */
export function appFrames(st: AppSocketState, userId: number, e: BusEvent): { frames: Frame[]; close?: string } {
  const t = st.target;
  const frames: Frame[] = [];
  if (!t) return { frames };
  const now = new Date().toISOString();
  const fromOther = (from: number, call: boolean) => from !== userId && (st.verified || call);
  switch (e.type) {
    case 'message.created': {
      const m = e.payload as ChatMessageJson;
      if (!about(t, m.session_id, m.appointment_id)) break;
      if (t.scope.sessionId === null && m.session_id !== null) {
        t.scope = {
          ...t.scope,
          kind: 'session',
          sessionId: m.session_id,
          sessionKind: m.session_context?.startsWith('call_') ? 'call' : 'text',
        };
      }
      if (st.verified) frames.push({ type: 'chat-message', appointmentId: st.label, message: appMessageJson(m), timestamp: now });
      break;
    }
    case 'typing': {
      const d = e.payload as TypingEventData;
      if (about(t, d.session_id, d.appointment_id) && fromOther(d.user_id, false))
        frames.push({
          type: 'typing-indicator',
          appointmentId: st.label,
          isTyping: d.typing,
          senderId: d.user_id,
          senderName: d.user_name,
        });
      break;
    }
    case 'read': {
      const d = e.payload as ReadEventData;
      if (about(t, d.session_id, d.appointment_id) && fromOther(d.user_id, false)) {
        frames.push({
          type: 'read-receipt',
          appointmentId: st.label,
          messageId: String(d.last_read_message_id),
          senderId: d.user_id,
          timestamp: now,
        });
      }
      break;
    }
    case 'session.status': {
      const d = e.payload as SessionStatusEventData;
      if (!about(t, d.session_id, null)) break;
      const status = d.status as Session['status'];
      t.scope = { ...t.scope, status };
      const live = isLive(status);
      if (t.scope.sessionKind === 'call' && !live) {
        frames.push({ type: 'call-ended', appointmentId: st.label, reason: d.end_reason, status: appCallStatus(status), timestamp: now });
      }
      // A token-less call socket is good for one live call only.
      if (!st.verified) return live ? { frames } : { frames, close: 'call ended' };
      if (st.path !== 'chat') break;
      if (status === 'active' && t.scope.sessionKind === 'text')
        frames.push({ type: 'session-activated', appointmentId: st.label, timestamp: now });
      if (status === 'expired') frames.push({ type: 'session-expired', appointmentId: st.label, reason: d.end_reason, timestamp: now });
      if (!live) frames.push({ type: 'session-ended', appointmentId: st.label, reason: d.end_reason, endedAt: now, status });
      break;
    }
    case 'call.signal': {
      // A sessiongate client (/api/v2/ws) calling an app user: its signals in the app's frames.
      const d = e.payload as CallSignalEventData;
      if (!about(t, d.session_id, null) || !e.userIds?.includes(userId)) break;
      const sig = d.signal;
      const frame =
        sig.type === 'offer'
          ? { type: 'offer', offer: { type: 'offer', sdp: sig.sdp } }
          : sig.type === 'answer'
            ? { type: 'answer', answer: { type: 'answer', sdp: sig.sdp } }
            : {
                type: 'ice-candidate',
                candidate: { candidate: sig.candidate, sdpMid: sig.sdpMid ?? null, sdpMLineIndex: sig.sdpMLineIndex ?? null },
              };
      frames.push({ ...frame, senderId: d.from_user_id, userId: d.from_user_id, appointmentId: st.label, timestamp: now });
      break;
    }
    case RELAY_EVENT: {
      const d = e.payload as RelayPayload;
      if (about(t, d.session_id, d.appointment_id) && fromOther(d.from_user_id, d.call))
        frames.push({ ...d.frame, appointmentId: st.label });
      break;
    }
  }
  return { frames };
}

/** The message of a `chat-message` frame: the store build's flat form, or the nested form the old server expected. */
export function messageInput(f: Frame): MessageInput {
  const nested = f['message'] !== null && typeof f['message'] === 'object' ? (f['message'] as Frame) : null;
  const body = nested ? nested['message'] : f['content'];
  if (typeof body !== 'string') throw invalid('chat-message needs content');
  const rawType = nested ? nested['message_type'] : f['messageType'];
  const type = rawType === 'image' || rawType === 'voice' ? rawType : 'text';
  const mediaUrl = str(nested ? nested['media_url'] : f['mediaUrl'], 2048);
  const clientId = str(nested ? nested['temp_id'] : f['tempId'], 100);
  const reply = f['replyTo'] !== null && typeof f['replyTo'] === 'object' ? (f['replyTo'] as Frame)['messageId'] : undefined;
  const replyTo = typeof reply === 'number' ? reply : typeof reply === 'string' ? parsePositiveId(reply) : null;
  return {
    clientMessageId: clientId,
    type,
    body,
    mediaUrl: type === 'text' ? null : mediaUrl,
    replyTo: replyTo !== null && Number.isSafeInteger(replyTo) && replyTo > 0 ? replyTo : null,
  };
}

/** The type of a client frame: a JSON object with a short string `type`, else null. */
export function frameType(text: string | null): { frame: Frame; type: string } | null {
  let f: unknown = null;
  try {
    f = text === null ? null : JSON.parse(text);
  } catch {
    f = null;
  }
  if (f === null || typeof f !== 'object' || Array.isArray(f)) return null;
  const type = str((f as Frame)['type'], 64);
  return type === null ? null : { frame: f as Frame, type };
}
