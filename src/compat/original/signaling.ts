/**
 * The original app's WebSocket protocol on the paths it dials, at the root:
 * `/chat-signaling`, `/call-signaling`, `/audio-signaling` (alias) and
 * `/incoming-call-notifications`. Sub-protocol `no-compression` is echoed (app.ts registers it
 * with the one WebSocket server). Query: `appointmentId` (any of the app's id forms), `userId`,
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
 *   back to both parties as a `chat-message` frame in the app's message shape.
 * - `typing-indicator` → the core's typing; `read-receipt` with a stored message id → the core's
 *   read horizon (`read` comes back as `read-receipt`); `session-status-request` → answered.
 * - `delivery-status`, `session-ended`, `message-read`, other unknown types, and the call frames
 *   (`offer`, `answer`, `ice-candidate`, `call-answered`, `call-rejected`, `call-ended`,
 *   `resend-offer-request`) are relayed to the OTHER participant's sockets of the room with
 *   `senderId` / `userId` / `appointmentId` / `timestamp` set by the server. Relays travel on the
 *   event bus, so the two parties may be connected to different API processes.
 *   (Translations: signaling-frames.ts; what `appointmentId` names: signaling-target.ts.)
 * - the core's `session.status` becomes `session-activated`, `session-expired`, `session-ended`
 *   (chat sockets) and `call-ended` (every socket of a call that stopped being live).
 *   Call frames other than `call-ended` / `call-rejected` are refused once the room's session
 *   stopped being live (SESSION_NOT_ACTIVE).
 *
 * Access and limits are the core gateway's, through the same socket hub (src/gateway/socket-hub.ts):
 * before acting on a frame the user is re-read (deactivated, deleted or demoted: the socket is
 * closed, 4003, and the frame dropped) and so is the room's session or appointment (a frame acts
 * on the session as it is now); a revoked user's sockets are closed on every process; events
 * reach a socket only while its user may see the session; at most WS_MAX_CONNECTIONS_PER_USER
 * sockets per user and RATE_LIMIT_WS_CONNECT_PER_MINUTE handshakes, counted with /api/v2/ws;
 * frames ≤ 64 KiB, 50 frames a second (then an `error` frame; 4× that closes 1008), protocol
 * pings every 30 s, a slow consumer is cut off, an expiring token closes the socket (4001).
 */
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import type { Session } from '../../db/types.js';
import { DomainError, forbidden, invalid, notFound, unauthenticated } from '../../lib/errors.js';
import type { AuthUser } from '../../plugins/auth.js';
import { sendLegacy } from '../../modules/chat/legacy.js';
import { sendToSession } from '../../modules/chat/send.js';
import { markRead, setTyping } from '../../modules/chat/service.js';
import { formatSessionContext, parsePositiveId } from '../../modules/session-context.js';
import { recordCallPresence } from '../../modules/sessions/limits.js';
import { freshSession, sessionByContext, sessionJson } from '../../modules/sessions/service.js';
import { isLive } from '../../modules/sessions/state.js';
import { activeUser } from '../../modules/users/service.js';
import type { HubSocket, SocketRoute, Topic } from '../../gateway/socket-hub.js';
import { appCallStatus, callKeyOf } from './call-shapes.js';
import {
  appFrames,
  CALL_END_FRAMES,
  CALL_FRAMES,
  frameType,
  messageInput,
  metricLabel,
  relayEvent,
  type AppSocketState,
  type PathKind,
} from './signaling-frames.js';
import { currentTarget, partiesOf, resolveTarget, topicOf } from './signaling-target.js';

const PATHS: readonly { url: string; kind: PathKind; connectionType: string }[] = [
  { url: '/chat-signaling', kind: 'chat', connectionType: 'chat' },
  { url: '/call-signaling', kind: 'call', connectionType: 'audio' },
  { url: '/audio-signaling', kind: 'call', connectionType: 'audio-legacy' },
  { url: '/incoming-call-notifications', kind: 'notifications', connectionType: 'notifications' },
];

/** A user's token-less sockets per call (the app opens two or three per screen). */
export const MAX_TOKENLESS_SOCKETS = 3;

interface Handshake extends AppSocketState {
  user: AuthUser;
  exp: number | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    originalWs: Handshake | null;
  }
}

const str = (v: unknown, max: number): string | null => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : null);

export default async function signalingRoutes(app: FastifyInstance) {
  const { ctx, socketHub: hub } = app;
  const log = ctx.log.child({ component: 'original-ws' });
  const states = new WeakMap<HubSocket, AppSocketState>();
  app.decorateRequest('originalWs', null);

  const send = (c: HubSocket, frame: Record<string, unknown>) => hub.send(c, JSON.stringify(frame), metricLabel(String(frame['type'])));
  const errorFrame = (c: HubSocket, err: unknown, of: string) => {
    if (err instanceof DomainError) {
      send(c, { type: 'error', of, error_code: err.code, message: err.message, ...err.details });
    } else {
      log.error({ err, user_id: c.user.id, frame_type: of }, 'original websocket frame failed');
      send(c, { type: 'error', of, error_code: 'INTERNAL_ERROR', message: 'Something went wrong on our side' });
    }
  };

  /** Moves the socket to its target's topic when that changed (an appointment's conversation got its session). */
  const follow = (c: HubSocket, st: AppSocketState, from: Topic) => {
    const to = topicOf(st.target!);
    if (JSON.stringify(from) === JSON.stringify(to)) return;
    hub.unsubscribe(c, from);
    hub.subscribe(c, to, partiesOf(st.target!));
  };

  // ---- app frames → core ---------------------------------------------------------------------
  const relay = (c: HubSocket, st: AppSocketState, frame: Record<string, unknown>, call: boolean) => {
    void ctx.bus.publish(relayEvent(st.target!, c.user.id, frame, call)).catch(() => {});
  };

  const chatMessage = async (c: HubSocket, st: AppSocketState, f: Record<string, unknown>) => {
    const t = st.target!;
    if (t.direct) {
      throw new DomainError('SESSION_CONTEXT_REQUIRED', 'direct_session_* is a call routing key, not a chat', { appointmentId: st.label });
    }
    const input = messageInput(f);
    // An appointment-keyed socket is an appointment-keyed chat: the SessionContextGuard decides, as for REST.
    if (parsePositiveId(st.label) !== null && t.scope.appointmentId === Number(st.label)) {
      await sendLegacy(ctx, c.user, st.label, 'sendMessage', input);
      return;
    }
    await sendToSession(ctx, c.user, { id: t.scope.sessionId!, kind: t.scope.sessionKind! }, input);
  };

  const statusResponse = async (c: HubSocket, st: AppSocketState) => {
    const { sessionId, sessionKind } = st.target!.scope;
    const now = new Date().toISOString();
    if (sessionId === null) {
      send(c, {
        type: 'session-status-response',
        appointmentId: st.label,
        sessionData: null,
        timerActive: false,
        timeRemaining: null,
        timestamp: now,
      });
      return;
    }
    const s = await freshSession(ctx, await sessionByContext(ctx.db, formatSessionContext(sessionKind!, sessionId)));
    st.target!.scope = { ...st.target!.scope, status: s.status };
    const deadline = s.doctor_response_deadline;
    const timerActive = s.status === 'waiting_for_doctor' && deadline !== null;
    send(c, {
      type: 'session-status-response',
      appointmentId: st.label,
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

  /** A frame of a socket whose user and target were just re-read. */
  const handleFrame = async (c: HubSocket, st: AppSocketState, f: Record<string, unknown>, type: string) => {
    const { scope } = st.target!;
    if (CALL_FRAMES.has(type)) {
      // Media negotiation belongs to a live call; the frames announcing its end may follow it.
      if (scope.sessionId !== null && !isLive(scope.status as Session['status']) && !CALL_END_FRAMES.has(type)) {
        throw new DomainError('SESSION_NOT_ACTIVE', `The session is ${scope.status}`, {
          appointmentId: st.label,
          session_status: scope.status,
        });
      }
      return relay(c, st, f, true);
    }
    if (!st.verified) throw forbidden('A call socket without a token carries call signalling only');
    switch (type) {
      case 'chat-message':
        return chatMessage(c, st, f);
      case 'typing-indicator':
        setTyping(ctx, app.chatTyping, c.user, scope, f['isTyping'] === true);
        return;
      case 'read-receipt': {
        const id =
          typeof f['messageId'] === 'number' ? f['messageId'] : typeof f['messageId'] === 'string' ? parsePositiveId(f['messageId']) : null;
        // A stored message id moves the reader's horizon (and comes back as `read`); a local temp id is only relayed.
        if (id !== null && Number.isSafeInteger(id) && id > 0) {
          await markRead(ctx, c.user, scope, id);
          return;
        }
        return relay(c, st, f, false);
      }
      case 'session-status-request':
        return statusResponse(c, st);
      default:
        // delivery-status, session-ended, message-read and anything else: relayed (the old server did).
        return relay(c, st, f, false);
    }
  };

  const route: SocketRoute = {
    async receive(c, text) {
      const st = states.get(c)!;
      const parsed = frameType(text);
      if (parsed === null) {
        send(c, { type: 'error', error_code: 'VALIDATION_FAILED', message: 'Expected a JSON object with a type' });
        return;
      }
      const { frame, type } = parsed;
      if (type === 'ping') return send(c, { type: 'pong', timestamp: Date.now() });
      if (type === 'pong') return;
      try {
        // Acts as the user is NOW (deactivated, deleted or demoted: the socket is closed instead),
        // on the session as it is now.
        if (!(await hub.current(c))) return;
        if (!st.target) return; // the notifications socket only pings
        const from = topicOf(st.target);
        st.target = await currentTarget(ctx, c.user, st.target);
        follow(c, st, from);
        await handleFrame(c, st, frame, type);
      } catch (err) {
        errorFrame(c, err, type);
      }
    },
    deliver(c, e) {
      const st = states.get(c)!;
      const from = st.target && topicOf(st.target);
      const { frames, close } = appFrames(st, c.user.id, e);
      if (from) follow(c, st, from);
      for (const f of frames) send(c, f);
      if (close) c.socket.close(1000, close);
    },
    closed(c) {
      presence(c, states.get(c)!, false);
    },
  };

  /** A participant on the call's socket is present: the call continues (session limits). */
  const presence = (c: HubSocket, st: AppSocketState, present: boolean) => {
    const scope = st.target?.scope;
    if (st.path !== 'call' || !scope || scope.sessionId === null || scope.sessionKind !== 'call') return;
    recordCallPresence(ctx.db, scope.sessionId, c.user.id, present, new Date()).catch((err: unknown) =>
      log.warn({ err, session_id: scope.sessionId }, 'could not record call presence'),
    );
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
      const u = await activeUser(ctx.db, userId);
      if (!u) throw notFound('User', { userId });
      user = u;
    }
    const verified = token !== null;
    hub.admit(user.id);
    if (kind === 'notifications') return { user, verified, exp, path: kind, label: label ?? '', target: null };

    const target = await resolveTarget(ctx, user, label!);
    if (!verified) {
      if (target.scope.sessionKind !== 'call' || !isLive(target.scope.status as Session['status'])) {
        throw forbidden('Without a token a call socket may only join a live call');
      }
      const mine = hub.subscribers(topicOf(target)).filter((o) => o.user.id === user.id && states.get(o)?.verified === false).length;
      if (mine >= MAX_TOKENLESS_SOCKETS)
        throw new DomainError('RATE_LIMITED', `At most ${MAX_TOKENLESS_SOCKETS} call sockets without a token per user and call`);
    }
    return { user, verified, exp, path: kind, label: label!, target };
  };

  for (const p of PATHS) {
    app.get(
      p.url,
      {
        websocket: true,
        // Handshakes per user (the address for a token-less socket), across processes, counted
        // with the /api/v2/ws handshakes.
        config: { rateLimit: { max: ctx.config.rateLimitWsConnectPerMinute, timeWindow: 60_000, groupId: 'ws-connect' } },
        // The URL carries the token: keep request logs (which print URLs) off for these routes.
        logLevel: 'warn',
        schema: { hide: true },
        preValidation: async (req) => {
          req.originalWs = await handshake(p.kind, (req.query ?? {}) as Record<string, unknown>);
          // The handshake rate limit keys on it: only a user proven by a token.
          if (req.originalWs.verified) req.user = req.originalWs.user;
        },
      },
      (socket, req) => {
        const { user, exp, ...state } = req.originalWs!;
        const c = hub.open(socket, user, exp, route);
        states.set(c, state);
        if (state.target) hub.subscribe(c, topicOf(state.target), partiesOf(state.target));
        presence(c, state, true);
        const timestamp = new Date().toISOString();
        if (p.kind === 'notifications') send(c, { type: 'notification-connection-established', userId: c.user.id, timestamp });
        else
          send(c, {
            type: 'connection-established',
            appointmentId: state.label,
            connectionType: p.connectionType,
            userId: c.user.id,
            timestamp,
          });
      },
    );
  }
}
