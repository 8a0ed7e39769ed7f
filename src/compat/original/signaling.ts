/**
 * The original app's WebSocket protocol (reference §9) on the paths it dials, at the root:
 * `/chat-signaling`, `/call-signaling`, `/audio-signaling` (alias) and
 * `/incoming-call-notifications`. Sub-protocol `no-compression` is echoed (app.ts registers it
 * with the one WebSocket server). Query: `appointmentId` (any id form of §0), `userId`,
 * `authToken`.
 *
 * Who may connect (the original verified nothing; see docs/security.md):
 * - with `authToken`: the JWT must verify and its subject must be `userId`; the user must be a
 *   participant of what `appointmentId` names (the core's access gate). Refused at the handshake
 *   (HTTP 400/401/403/404 problem document), never after.
 * - without a token — what the store build's call services send (`?appointmentId&userId&userType`)
 *   — only on the call paths, only to a LIVE CALL whose participant `userId` is, at most
 *   {@link MAX_TOKENLESS_SOCKETS} sockets per user and call, and such a socket carries call
 *   signalling only (no chat, no session data); it is closed when the call ends.
 *   `ORIGINAL_CALL_SOCKET_REQUIRE_TOKEN=true` refuses these once an app build sends a token.
 * - the notifications path sends only `userId`: it is accepted and answered, and is sent nothing
 *   else (incoming calls reach the app by push).
 *
 * A room is what `appointmentId` names — a session (whichever id form named it: `57`,
 * `call_session:9` and `direct_session_…` of one call are one room) or, before an appointment has
 * a session, the appointment. Frames:
 * - `chat-message` (flat) → stored through the core's chat send, `tempId` as the client message
 *   id (so the app's REST send of the same message and this frame store one message); an
 *   appointment-keyed socket sends through the SessionContextGuard like the legacy REST route;
 *   `direct_session_*` rooms have no chat. The core's `message.created` (from either door) comes
 *   back to both parties as a `chat-message` frame in the §4.1 shape.
 * - `typing-indicator` → the core's typing; `read-receipt` with a stored message id → the core's
 *   read horizon (`read` comes back as `read-receipt`); `session-status-request` → answered.
 * - `delivery-status`, `session-ended`, `message-read`, other unknown types, and the call frames
 *   (`offer`, `answer`, `ice-candidate`, `call-answered`, `call-rejected`, `call-ended`,
 *   `resend-offer-request`) are relayed to the OTHER participant's sockets of the room with
 *   `senderId` / `userId` / `appointmentId` / `timestamp` set by the server. Relays travel on the
 *   event bus, so the two parties may be connected to different API processes.
 * - the core's `session.status` becomes `session-activated`, `session-expired`, `session-ended`
 *   (chat sockets) and `call-ended` (every socket of a call that stopped being live).
 * Limits are the core gateway's: frames ≤ 64 KiB, 50 frames a second (then an `error` frame;
 * 4× that closes 1008), protocol pings every 30 s, a slow consumer is cut off, an expiring token
 * closes the socket (4001).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import type { WebSocket } from 'ws';
import type { AppContext } from '../../context.js';
import type { Session } from '../../db/types.js';
import { DomainError, forbidden, invalid, notFound, unauthenticated } from '../../lib/errors.js';
import type { AuthUser } from '../../plugins/auth.js';
import { assertParticipant, type Actor } from '../../modules/access.js';
import { getAppointment } from '../../modules/appointments/service.js';
import { sendLegacy } from '../../modules/chat/legacy.js';
import type { ChatScope } from '../../modules/chat/repository.js';
import type { ChatMessageJson } from '../../modules/chat/schemas.js';
import { sendToSession } from '../../modules/chat/send.js';
import { markRead, setTyping, type MessageInput } from '../../modules/chat/service.js';
import { formatSessionContext, parsePositiveId, parseSessionContext, type SessionKind } from '../../modules/session-context.js';
import { modalityForAppointmentType, sessionKindForModality } from '../../modules/appointments/modality.js';
import { recordCallPresence } from '../../modules/sessions/limits.js';
import { freshSession, sessionByContext, sessionByRoutingKey, sessionJson } from '../../modules/sessions/service.js';
import { isLive } from '../../modules/sessions/state.js';
import { getUser } from '../../modules/users/service.js';
import type { BusEvent } from '../../realtime/bus.js';
import type { CallSignalEventData, ReadEventData, SessionStatusEventData, TypingEventData } from '../../realtime/events.js';
import { DEFAULTS as LIMITS } from '../../gateway/gateway.js';
import { appCallStatus, callKeyOf } from './calls.js';

type PathKind = 'chat' | 'call' | 'notifications';

const PATHS: readonly { url: string; kind: PathKind; connectionType: string }[] = [
  { url: '/chat-signaling', kind: 'chat', connectionType: 'chat' },
  { url: '/call-signaling', kind: 'call', connectionType: 'audio' },
  { url: '/audio-signaling', kind: 'call', connectionType: 'audio-legacy' },
  { url: '/incoming-call-notifications', kind: 'notifications', connectionType: 'notifications' },
];

/** Call signalling frames: relayed to the other participant, also from token-less call sockets. */
const CALL_FRAMES = new Set(['offer', 'answer', 'ice-candidate', 'call-answered', 'call-rejected', 'call-ended', 'resend-offer-request']);
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
/** A user's token-less sockets per call (the app opens two or three per screen). */
export const MAX_TOKENLESS_SOCKETS = 3;
/** Bus event carrying a relayed app frame between processes; it names no session or user, so the core gateway ignores it. */
const RELAY_EVENT = 'original.relay';

interface Room {
  key: string;
  sessionId: number | null;
  appointmentId: number | null;
  kind: SessionKind | null;
  /** Session status, or the appointment's status before it has a session; kept current from the bus. */
  status: string;
  patientId: number;
  doctorId: number;
  /** Named by a `direct_session_*` key: no chat through it (SPEC §2.3). */
  direct: boolean;
  members: Set<AppSocket>;
}

interface AppSocket {
  id: string;
  socket: WebSocket;
  user: AuthUser;
  /** The user was proven by a verified token; a token-less call socket was not. */
  verified: boolean;
  path: PathKind;
  /** `appointmentId` as this socket sent it: echoed in the frames it receives. */
  label: string;
  room: Room | null;
  alive: boolean;
  window: { second: number; count: number };
  expiry: NodeJS.Timeout | null;
}

interface Handshake {
  user: AuthUser;
  verified: boolean;
  exp: number | null;
  label: string;
  target: Target | null;
}

interface Target {
  sessionId: number | null;
  appointmentId: number | null;
  kind: SessionKind | null;
  status: string;
  patientId: number;
  doctorId: number;
  direct: boolean;
}

interface RelayPayload {
  session_id: number | null;
  appointment_id: number | null;
  from_user_id: number;
  /** Delivered to token-less call sockets too. */
  call: boolean;
  frame: Record<string, unknown>;
}

declare module 'fastify' {
  interface FastifyRequest {
    originalWs: Handshake | null;
  }
}

const roomKey = (t: Pick<Target, 'sessionId' | 'appointmentId'>) => (t.sessionId !== null ? `s:${t.sessionId}` : `a:${t.appointmentId}`);

const fromSession = (s: Session, direct: boolean): Target => ({
  sessionId: s.id,
  appointmentId: s.appointment_id,
  kind: s.kind,
  status: s.status,
  patientId: s.patient_id,
  doctorId: s.doctor_id,
  direct,
});

/**
 * What an `appointmentId` of the app names (§0), for a participant: `direct_session_*` → that
 * call; an appointment id → its session, or the appointment before it has one; a bare number
 * that is no appointment → text session N (the old backend's fallback the app relies on);
 * `text_session_N`, `text_session:N`, `call_session:N` → that session.
 */
export async function resolveTarget(ctx: AppContext, actor: Actor, raw: string): Promise<Target> {
  if (raw.startsWith('direct_session_')) return fromSession(await sessionByRoutingKey(ctx.db, actor, raw), true);
  const n = parsePositiveId(raw);
  if (n !== null) {
    const a = await getAppointment(ctx.db, n);
    if (a) {
      assertParticipant(actor, a);
      if (a.session_id === null) {
        return {
          sessionId: null,
          appointmentId: a.id,
          kind: null,
          status: a.status,
          patientId: a.patient_id,
          doctorId: a.doctor_id,
          direct: false,
        };
      }
      const modality = modalityForAppointmentType(a.appointment_type);
      const s = await sessionByContext(ctx.db, formatSessionContext(modality ? sessionKindForModality(modality) : 'text', a.session_id));
      return fromSession(s, false);
    }
    const s = await sessionByContext(ctx.db, formatSessionContext('text', n));
    assertParticipant(actor, s);
    return fromSession(s, false);
  }
  const parsed = parseSessionContext(raw);
  if (parsed.type === 'invalid') throw invalid('appointmentId is not an appointment id, a session or a call key', { appointmentId: raw });
  const s = await sessionByContext(ctx.db, raw);
  assertParticipant(actor, s);
  return fromSession(s, false);
}

const str = (v: unknown, max: number): string | null => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : null);

/** A stored message in the shape the app reads (§4.1, §9.3). */
export function appMessageJson(m: ChatMessageJson) {
  return {
    id: m.id,
    appointment_id: m.appointment_id ?? m.session_id,
    session_id: m.session_id,
    session_context: m.session_context,
    sender_id: m.sender_id,
    sender_name: m.sender_name,
    message: m.body,
    message_type: m.type,
    media_url: m.media_url,
    temp_id: m.client_message_id,
    reply_to_id: m.reply_to_message_id,
    created_at: m.created_at,
    timestamp: m.created_at,
    delivery_status: 'sent',
    read_by: [] as unknown[],
  };
}

/** The message of a `chat-message` frame: the store build's flat form, or the nested form the old server expected. */
function messageInput(f: Record<string, unknown>): MessageInput {
  const nested = f['message'] !== null && typeof f['message'] === 'object' ? (f['message'] as Record<string, unknown>) : null;
  const body = nested ? nested['message'] : f['content'];
  if (typeof body !== 'string') throw invalid('chat-message needs content');
  const rawType = nested ? nested['message_type'] : f['messageType'];
  const type = rawType === 'image' || rawType === 'voice' ? rawType : 'text';
  const mediaUrl = str(nested ? nested['media_url'] : f['mediaUrl'], 2048);
  const clientId = str(nested ? nested['temp_id'] : f['tempId'], 100);
  const reply =
    f['replyTo'] !== null && typeof f['replyTo'] === 'object' ? (f['replyTo'] as Record<string, unknown>)['messageId'] : undefined;
  const replyTo = typeof reply === 'number' ? reply : typeof reply === 'string' ? parsePositiveId(reply) : null;
  return {
    clientMessageId: clientId,
    type,
    body,
    mediaUrl: type === 'text' ? null : mediaUrl,
    replyTo: replyTo !== null && Number.isSafeInteger(replyTo) && replyTo > 0 ? replyTo : null,
  };
}

export default async function signalingRoutes(app: FastifyInstance) {
  const { ctx } = app;
  const log = ctx.log.child({ component: 'original-ws' });
  const rooms = new Map<string, Room>();
  const all = new Set<AppSocket>();
  app.decorateRequest('originalWs', null);

  const count = (type: string) => ctx.metrics.realtime.events.inc({ event: KNOWN_OUT.has(type) ? type : 'other' });
  const send = (c: AppSocket, frame: Record<string, unknown>): void => {
    if (c.socket.readyState !== c.socket.OPEN) return;
    if (c.socket.bufferedAmount > LIMITS.maxBufferedBytes) {
      log.warn({ user_id: c.user.id, buffered: c.socket.bufferedAmount }, 'websocket slow consumer terminated');
      c.socket.terminate();
      return;
    }
    c.socket.send(JSON.stringify(frame));
    count(String(frame['type']));
  };
  const errorFrame = (c: AppSocket, err: unknown, of: string) => {
    if (err instanceof DomainError) {
      send(c, { type: 'error', of, error_code: err.code, message: err.message, ...err.details });
    } else {
      log.error({ err, user_id: c.user.id, frame_type: of }, 'original websocket frame failed');
      send(c, { type: 'error', of, error_code: 'INTERNAL_ERROR', message: 'Something went wrong on our side' });
    }
  };

  const roomOf = (sessionId: number | null | undefined, appointmentId: number | null | undefined): Room | undefined => {
    if (sessionId !== null && sessionId !== undefined) {
      const r = rooms.get(`s:${sessionId}`);
      if (r) return r;
    }
    return appointmentId !== null && appointmentId !== undefined ? rooms.get(`a:${appointmentId}`) : undefined;
  };

  /** An appointment's room learns its session when the first session event names both. */
  const promote = (room: Room, sessionId: number, context: string | null) => {
    if (room.sessionId !== null || rooms.has(`s:${sessionId}`)) return;
    rooms.delete(room.key);
    room.sessionId = sessionId;
    room.kind = context?.startsWith('call_') ? 'call' : 'text';
    room.key = `s:${sessionId}`;
    rooms.set(room.key, room);
  };

  const others = (room: Room, userId: number, call: boolean) =>
    [...room.members].filter((m) => m.user.id !== userId && (m.verified || call));

  // ---- core events → app frames --------------------------------------------------------------
  const onEvent = (e: BusEvent): void => {
    const now = new Date().toISOString();
    switch (e.type) {
      case 'message.created': {
        const m = e.payload as ChatMessageJson;
        const room = roomOf(m.session_id, m.appointment_id);
        if (!room) return;
        if (m.session_id !== null) promote(room, m.session_id, m.session_context);
        for (const c of room.members) {
          if (c.verified) send(c, { type: 'chat-message', appointmentId: c.label, message: appMessageJson(m), timestamp: now });
        }
        return;
      }
      case 'typing': {
        const d = e.payload as TypingEventData;
        const room = roomOf(d.session_id, d.appointment_id);
        if (!room) return;
        for (const c of others(room, d.user_id, false)) {
          send(c, { type: 'typing-indicator', appointmentId: c.label, isTyping: d.typing, senderId: d.user_id, senderName: d.user_name });
        }
        return;
      }
      case 'read': {
        const d = e.payload as ReadEventData;
        const room = roomOf(d.session_id, d.appointment_id);
        if (!room) return;
        for (const c of others(room, d.user_id, false)) {
          send(c, {
            type: 'read-receipt',
            appointmentId: c.label,
            messageId: String(d.last_read_message_id),
            senderId: d.user_id,
            timestamp: now,
          });
        }
        return;
      }
      case 'session.status': {
        const d = e.payload as SessionStatusEventData;
        const room = roomOf(d.session_id, null);
        if (!room) return;
        room.status = d.status;
        const live = isLive(d.status as Session['status']);
        for (const c of [...room.members]) {
          if (room.kind === 'call' && !live) {
            send(c, {
              type: 'call-ended',
              appointmentId: c.label,
              reason: d.end_reason,
              status: appCallStatus(d.status as Session['status']),
              timestamp: now,
            });
          }
          if (!c.verified) {
            // A token-less call socket is good for one live call only.
            if (!live) c.socket.close(1000, 'call ended');
            continue;
          }
          if (c.path !== 'chat') continue;
          if (d.status === 'active' && room.kind === 'text') send(c, { type: 'session-activated', appointmentId: c.label, timestamp: now });
          if (d.status === 'expired') send(c, { type: 'session-expired', appointmentId: c.label, reason: d.end_reason, timestamp: now });
          if (!live) send(c, { type: 'session-ended', appointmentId: c.label, reason: d.end_reason, endedAt: now, status: d.status });
        }
        return;
      }
      case 'call.signal': {
        // A sessiongate client (/api/v2/ws) calling an app user: its signals in the app's frames.
        const d = e.payload as CallSignalEventData;
        const room = roomOf(d.session_id, null);
        if (!room || !e.userIds) return;
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
        for (const c of room.members) {
          if (e.userIds.includes(c.user.id))
            send(c, { ...frame, senderId: d.from_user_id, userId: d.from_user_id, appointmentId: c.label, timestamp: now });
        }
        return;
      }
      case RELAY_EVENT: {
        const d = e.payload as RelayPayload;
        const room = roomOf(d.session_id, d.appointment_id);
        if (!room) return;
        for (const c of others(room, d.from_user_id, d.call)) send(c, { ...d.frame, appointmentId: c.label });
        return;
      }
    }
  };
  const unsubscribe = ctx.bus.subscribe(onEvent);

  const heartbeat = setInterval(() => {
    for (const c of all) {
      if (!c.alive) {
        c.socket.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.socket.ping();
      } catch {
        c.socket.terminate();
      }
    }
  }, LIMITS.heartbeatMs);
  heartbeat.unref();
  app.addHook('onClose', async () => {
    clearInterval(heartbeat);
    unsubscribe();
  });

  // ---- app frames → core ---------------------------------------------------------------------
  const relay = (c: AppSocket, frame: Record<string, unknown>, call: boolean) => {
    const room = c.room!;
    const payload: RelayPayload = {
      session_id: room.sessionId,
      appointment_id: room.appointmentId,
      from_user_id: c.user.id,
      call,
      // Identity fields are the server's: a socket cannot speak for someone else.
      frame: { ...frame, senderId: c.user.id, userId: c.user.id, timestamp: new Date().toISOString() },
    };
    void ctx.bus.publish({ type: RELAY_EVENT, payload }).catch(() => {});
  };

  /** The conversation of a room, as the core's chat service names it (session, or pre-session appointment). */
  const scopeOf = (room: Room): ChatScope => ({
    kind: room.sessionId !== null ? 'session' : 'appointment',
    sessionId: room.sessionId,
    sessionKind: room.kind,
    status: room.status,
    appointmentId: room.appointmentId,
    patientId: room.patientId,
    doctorId: room.doctorId,
  });

  const chatMessage = async (c: AppSocket, f: Record<string, unknown>) => {
    const room = c.room!;
    if (room.direct) {
      throw new DomainError('SESSION_CONTEXT_REQUIRED', 'direct_session_* is a call routing key, not a chat', { appointmentId: c.label });
    }
    const input = messageInput(f);
    // An appointment-keyed socket is an appointment-keyed chat: the SessionContextGuard decides, as for REST.
    if (parsePositiveId(c.label) !== null && room.appointmentId === Number(c.label)) {
      await sendLegacy(ctx, c.user, c.label, 'sendMessage', input);
      return;
    }
    await sendToSession(ctx, c.user, { id: room.sessionId!, kind: room.kind! }, input);
  };

  const statusResponse = async (c: AppSocket) => {
    const room = c.room!;
    const now = new Date().toISOString();
    if (room.sessionId === null) {
      send(c, {
        type: 'session-status-response',
        appointmentId: c.label,
        sessionData: null,
        timerActive: false,
        timeRemaining: null,
        timestamp: now,
      });
      return;
    }
    const s = await freshSession(ctx, await sessionByContext(ctx.db, formatSessionContext(room.kind!, room.sessionId)));
    room.status = s.status;
    const deadline = s.doctor_response_deadline;
    const timerActive = s.status === 'waiting_for_doctor' && deadline !== null;
    send(c, {
      type: 'session-status-response',
      appointmentId: c.label,
      sessionData: {
        ...sessionJson(s),
        session_status: s.status,
        ...(s.kind === 'call' ? { status: appCallStatus(s.status), appointment_id: callKeyOf(s) } : {}),
      },
      timerActive,
      timeRemaining: timerActive ? Math.max(0, Math.ceil((deadline.getTime() - Date.now()) / 1000)) : null,
      doctor_response_deadline: deadline ? deadline.toISOString() : null,
      hasPatientMessage: s.patient_first_message_at !== null,
      hasDoctorResponse: s.activated_at !== null,
      timestamp: now,
    });
  };

  const handleFrame = async (c: AppSocket, f: Record<string, unknown>, type: string) => {
    if (type === 'ping') return send(c, { type: 'pong', timestamp: Date.now() });
    if (type === 'pong') return;
    if (!c.room) return; // the notifications socket only pings
    if (CALL_FRAMES.has(type)) return relay(c, f, true);
    if (!c.verified) throw forbidden('A call socket without a token carries call signalling only');
    switch (type) {
      case 'chat-message':
        return chatMessage(c, f);
      case 'typing-indicator':
        setTyping(ctx, app.chatTyping, c.user, scopeOf(c.room), f['isTyping'] === true);
        return;
      case 'read-receipt': {
        const id =
          typeof f['messageId'] === 'number' ? f['messageId'] : typeof f['messageId'] === 'string' ? parsePositiveId(f['messageId']) : null;
        // A stored message id moves the reader's horizon (and comes back as `read`); a local temp id is only relayed.
        if (id !== null && Number.isSafeInteger(id) && id > 0) {
          await markRead(ctx, c.user, scopeOf(c.room), id);
          return;
        }
        return relay(c, f, false);
      }
      case 'session-status-request':
        return statusResponse(c);
      default:
        // delivery-status, session-ended, message-read and anything else: relayed (the old server did).
        return relay(c, f, false);
    }
  };

  const onMessage = async (c: AppSocket, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): Promise<void> => {
    const second = Math.floor(Date.now() / 1000);
    if (c.window.second !== second) c.window = { second, count: 0 };
    c.window.count += 1;
    if (c.window.count > LIMITS.maxMessagesPerSecond * 4) {
      c.socket.close(1008, 'rate limit exceeded');
      return;
    }
    if (c.window.count > LIMITS.maxMessagesPerSecond) {
      if (c.window.count === LIMITS.maxMessagesPerSecond + 1)
        send(c, { type: 'error', error_code: 'RATE_LIMITED', message: 'Too many messages; slow down' });
      return;
    }
    let f: unknown;
    try {
      f = isBinary
        ? null
        : JSON.parse(
            Buffer.isBuffer(data)
              ? data.toString('utf8')
              : Array.isArray(data)
                ? Buffer.concat(data).toString('utf8')
                : Buffer.from(data).toString('utf8'),
          );
    } catch {
      f = null;
    }
    const type = f !== null && typeof f === 'object' && !Array.isArray(f) ? str((f as Record<string, unknown>)['type'], 64) : null;
    if (type === null) {
      send(c, { type: 'error', error_code: 'VALIDATION_FAILED', message: 'Expected a JSON object with a type' });
      return;
    }
    try {
      await handleFrame(c, f as Record<string, unknown>, type);
    } catch (err) {
      errorFrame(c, err, type);
    }
  };

  // ---- handshake -----------------------------------------------------------------------------
  const handshake = async (kind: PathKind, query: Record<string, unknown>): Promise<Handshake> => {
    const label = str(query['appointmentId'], 100);
    const userIdRaw = str(query['userId'], 20);
    const token = str(query['authToken'], 8192);
    const userId = userIdRaw === null ? null : parsePositiveId(userIdRaw);
    if (userId === null) throw invalid('userId is required');
    if (kind !== 'notifications' && label === null) throw invalid('appointmentId is required');

    let user: AuthUser | null;
    let exp: number | null = null;
    if (token !== null) {
      user = await app.authenticateToken(token);
      if (!user) throw unauthenticated('Invalid or expired token');
      if (user.id !== userId) throw forbidden('userId does not match the token');
      try {
        const claims = decodeJwt(token);
        exp = typeof claims.exp === 'number' ? claims.exp : null;
      } catch {
        exp = null;
      }
    } else {
      if (kind === 'chat') throw unauthenticated('authToken is required');
      if (kind === 'call' && ctx.config.originalCallSocketRequireToken) throw unauthenticated('authToken is required');
      const u = await getUser(ctx.db, userId);
      if (!u) throw notFound('User', { userId });
      user = { id: u.id, role: u.role, name: u.name, country: u.country, timezone: u.timezone };
    }
    const verified = token !== null;
    if (kind === 'notifications') return { user, verified, exp, label: label ?? '', target: null };

    const target = await resolveTarget(ctx, user, label!);
    if (!verified) {
      if (target.kind !== 'call' || !isLive(target.status as Session['status'])) {
        throw forbidden('Without a token a call socket may only join a live call');
      }
      const room = rooms.get(roomKey(target));
      const mine = room ? [...room.members].filter((m) => !m.verified && m.user.id === user.id).length : 0;
      if (mine >= MAX_TOKENLESS_SOCKETS)
        throw new DomainError('RATE_LIMITED', `At most ${MAX_TOKENLESS_SOCKETS} call sockets without a token per user and call`);
    }
    return { user, verified, exp, label: label!, target };
  };

  for (const p of PATHS) {
    app.get(
      p.url,
      {
        websocket: true,
        // The URL carries the token: keep request logs (which print URLs) off for these routes.
        logLevel: 'warn',
        schema: { hide: true },
        preValidation: async (req) => {
          req.originalWs = await handshake(p.kind, (req.query ?? {}) as Record<string, unknown>);
        },
      },
      (socket, req) => {
        const h = req.originalWs!;
        const c: AppSocket = {
          id: randomUUID(),
          socket,
          user: h.user,
          verified: h.verified,
          path: p.kind,
          label: h.label,
          room: null,
          alive: true,
          window: { second: 0, count: 0 },
          expiry: null,
        };
        all.add(c);
        ctx.metrics.realtime.connections.inc();
        if (h.target) {
          const key = roomKey(h.target);
          let room = rooms.get(key);
          if (!room) rooms.set(key, (room = { key, ...h.target, members: new Set() }));
          room.members.add(c);
          c.room = room;
        }
        // A participant on the call's socket is present: the call continues (session limits).
        const presence = (present: boolean) => {
          const room = c.room;
          if (p.kind !== 'call' || !room || room.sessionId === null || room.kind !== 'call') return;
          recordCallPresence(ctx.db, room.sessionId, c.user.id, present, new Date()).catch((err: unknown) =>
            log.warn({ err, session_id: room.sessionId }, 'could not record call presence'),
          );
        };
        presence(true);
        if (h.exp !== null) {
          const ms = Math.max(0, h.exp * 1000 - Date.now());
          if (ms < 2 ** 31 - 1) {
            c.expiry = setTimeout(() => socket.close(4001, 'token expired'), ms);
            c.expiry.unref();
          }
        }
        socket.on('pong', () => {
          c.alive = true;
        });
        socket.on('message', (data, isBinary) => {
          void onMessage(c, data, isBinary);
        });
        socket.on('close', () => {
          all.delete(c);
          presence(false);
          if (c.room) {
            c.room.members.delete(c);
            if (c.room.members.size === 0) rooms.delete(c.room.key);
          }
          if (c.expiry) clearTimeout(c.expiry);
          ctx.metrics.realtime.connections.dec();
        });
        const timestamp = new Date().toISOString();
        if (p.kind === 'notifications') send(c, { type: 'notification-connection-established', userId: c.user.id, timestamp });
        else
          send(c, {
            type: 'connection-established',
            appointmentId: c.label,
            connectionType: p.connectionType,
            userId: c.user.id,
            timestamp,
          });
      },
    );
  }
}
