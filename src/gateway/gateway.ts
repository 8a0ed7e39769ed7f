/**
 * The WebSocket gateway at `GET /api/v2/ws` (protocol: `events.ts`).
 *
 * - Authentication on connect: the JWT in `Sec-WebSocket-Protocol: bearer, <jwt>` (the server
 *   answers with the `bearer` sub-protocol, never echoing the token) or `?token=<jwt>`. Without a
 *   valid token the upgrade is refused with HTTP 401 — no socket is ever opened for a stranger
 *   (the original let anyone join any room). The connection closes (4001) when the token expires.
 * - A client subscribes to sessions by context. Participants and admins may subscribe (admins
 *   read-only: they receive events but cannot send typing or call signals); anyone else is
 *   refused. Events reach the connections subscribed to their session; events addressed to users
 *   (notifications, call signals) reach those users' connections.
 * - `call.signal` relays WebRTC offer / answer / ICE to the OTHER participant of a live call
 *   session only; the sender is the authenticated user.
 * - Limits, access and fan-out are the socket hub's (`socket-hub.ts`), shared with the original
 *   app's sockets: frames ≤ 64 KiB (larger → close 1009); ≤ 50 client messages per second (excess
 *   answered RATE_LIMITED, ≥ 200 in a second → close 1008); a slow consumer (over 1 MiB unsent)
 *   is terminated (it reconnects and catches up from `GET …/messages?after=`); heartbeat ping
 *   every 30 s; at most WS_MAX_CONNECTIONS_PER_USER sockets per user and
 *   RATE_LIMIT_WS_CONNECT_PER_MINUTE handshakes; every client message re-reads the user, every
 *   session event is checked against the connection's current access, and a revoked user's
 *   sockets are closed (4003). `resync` goes to every connection when the process's event bus may
 *   have missed events (its LISTEN connection was lost and is back): clients re-read what they show.
 *   Only this protocol's events (events.ts) are sent; other routes' bus events are not.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { decodeJwt } from 'jose';
import { DomainError, forbidden, invalid, unauthenticated } from '../lib/errors.js';
import type { AuthUser } from '../plugins/auth.js';
import { accessOf, assertParticipant } from '../modules/access.js';
import { sessionScope, setTyping } from '../modules/chat/service.js';
import { contextOf, freshSession, participantSession, sessionByContext } from '../modules/sessions/service.js';
import { recordCallPresence } from '../modules/sessions/limits.js';
import { isLive } from '../modules/sessions/state.js';
import { parseClientMessage, publishEvent, SERVER_EVENT_TYPES, type ClientMessage } from '../realtime/events.js';
import websocketSupport from './websocket.js';
import type { HubSocket, SocketLimits, SocketRoute } from './socket-hub.js';

export interface GatewayOptions extends Partial<SocketLimits> {
  maxSubscriptions?: number;
}

/** Sessions one connection may follow at once. */
const MAX_SUBSCRIPTIONS = 100;

interface Subscription {
  sessionId: number;
  context: string;
  patient_id: number;
  doctor_id: number;
}

/** The events of the protocol (events.ts); anything else on the bus is another route's. */
const PROTOCOL_EVENTS = new Set<string>(SERVER_EVENT_TYPES);

declare module 'fastify' {
  interface FastifyRequest {
    wsAuth: { user: AuthUser; exp: number | null } | null;
  }
}

/** The token of a handshake: `Sec-WebSocket-Protocol: bearer, <jwt>` or `?token=`. */
export function handshakeToken(req: FastifyRequest): string | null {
  const proto = req.headers['sec-websocket-protocol'];
  if (typeof proto === 'string') {
    const parts = proto.split(',').map((p) => p.trim());
    const i = parts.findIndex((p) => p.toLowerCase() === 'bearer');
    if (i >= 0 && parts[i + 1]) return parts[i + 1]!;
  }
  const q = req.query as Record<string, unknown> | undefined;
  return typeof q?.['token'] === 'string' && q['token'].length > 0 ? q['token'] : null;
}

export default async function realtimeGateway(app: FastifyInstance, opts: GatewayOptions = {}): Promise<void> {
  const { maxSubscriptions = MAX_SUBSCRIPTIONS, ...limits } = opts;
  const { ctx } = app;
  const log = ctx.log.child({ component: 'ws' });

  // The app registers WebSocket support (and its socket hub) once at its root (app.ts); a gateway
  // built alone brings its own, with the limits given here. `bearer` is selected when offered;
  // the JWT (the other offered value) is never echoed.
  if (!app.hasDecorator('websocketServer')) {
    await app.register(websocketSupport, { ...limits, protocols: ['bearer'] });
  }
  app.decorateRequest('wsAuth', null);
  const hub = app.socketHub;
  const subscriptionsOf = new WeakMap<HubSocket, Map<number, Subscription>>();
  const subs = (c: HubSocket) => subscriptionsOf.get(c)!;

  const reply = (c: HubSocket, frame: Record<string, unknown>) => hub.send(c, JSON.stringify(frame), String(frame['type']));

  const handlers: {
    [K in ClientMessage['type']]: (c: HubSocket, m: Extract<ClientMessage, { type: K }>) => Promise<Record<string, unknown>>;
  } = {
    async subscribe(c, m) {
      const s = await sessionByContext(ctx.db, m.session_context);
      const access = accessOf(c.user, s);
      if (!access) throw forbidden('You are not a participant of this session');
      if (!subs(c).has(s.id)) {
        if (subs(c).size >= maxSubscriptions) throw invalid(`At most ${maxSubscriptions} subscriptions per connection`);
        subs(c).set(s.id, { sessionId: s.id, context: contextOf(s), patient_id: s.patient_id, doctor_id: s.doctor_id });
        hub.subscribe(c, { sessionId: s.id }, s);
      }
      if (s.kind === 'call' && access !== 'admin') await recordCallPresence(ctx.db, s.id, c.user.id, true, new Date());
      return { type: 'subscribed', session_context: contextOf(s), session_id: s.id, session_status: s.status, access };
    },
    async unsubscribe(c, m) {
      const s = await sessionByContext(ctx.db, m.session_context);
      if (subs(c).delete(s.id)) hub.unsubscribe(c, { sessionId: s.id });
      return { type: 'unsubscribed', session_context: contextOf(s), session_id: s.id };
    },
    async typing(c, m) {
      ctx.metrics.guard.chatOperations.inc({ operation: m.typing ? 'startTyping' : 'stopTyping', path: 'session' });
      // Authorize before freshSession, which may advance the session's timers: a stranger's
      // refused request changes nothing.
      const s = await freshSession(ctx, await participantSession(ctx.db, c.user, m.session_context));
      const r = setTyping(ctx, app.chatTyping, c.user, sessionScope(s), m.typing);
      return { type: 'ack', of: 'typing', session_context: contextOf(s), ...r };
    },
    async 'call.signal'(c, m) {
      const s = await sessionByContext(ctx.db, m.session_context);
      const party = assertParticipant(c.user, s);
      if (s.kind !== 'call') throw invalid('call.signal is only for call sessions', { session_context: contextOf(s) });
      if (!isLive(s.status))
        throw new DomainError('SESSION_NOT_ACTIVE', `The call is ${s.status}`, { session_context: contextOf(s), session_status: s.status });
      const other = party === 'patient' ? s.doctor_id : s.patient_id;
      publishEvent(
        ctx.bus,
        'call.signal',
        { session_id: s.id, session_context: contextOf(s), from_user_id: c.user.id, signal: m.signal },
        { userIds: [other] },
      );
      return { type: 'ack', of: 'call.signal', session_context: contextOf(s) };
    },
    async ping() {
      return { type: 'pong' };
    },
  };

  const receive = async (c: HubSocket, text: string | null): Promise<void> => {
    const parsed = text === null ? { ok: false as const } : parseClientMessage(text);
    if (!parsed.ok) {
      reply(c, {
        type: 'error',
        error_code: 'VALIDATION_FAILED',
        message: 'Unknown or malformed message (expected JSON: subscribe, unsubscribe, typing, call.signal, ping)',
        ...(parsed.ref === undefined ? {} : { ref: parsed.ref }),
      });
      return;
    }
    const m = parsed.message;
    const ref = m.ref === undefined ? {} : { ref: m.ref };
    try {
      // Acts as the user is NOW (deactivated, deleted or demoted: the socket is closed instead).
      if (m.type !== 'ping') {
        if (!(await hub.current(c))) return;
      }
      const handler = handlers[m.type] as (c: HubSocket, m: ClientMessage) => Promise<Record<string, unknown>>;
      reply(c, { ...(await handler(c, m)), ...ref });
    } catch (err) {
      if (err instanceof DomainError) {
        reply(c, { type: 'error', error_code: err.code, message: err.message, ...err.details, ...ref });
      } else {
        log.error({ err, user_id: c.user.id, message_type: m.type }, 'websocket message failed');
        reply(c, { type: 'error', error_code: 'INTERNAL_ERROR', message: 'Something went wrong on our side', ...ref });
      }
    }
  };

  const route: SocketRoute = {
    receive,
    deliver(c, e, cache) {
      if (!PROTOCOL_EVENTS.has(e.type)) return;
      let frame = cache.get('v2');
      if (frame === undefined) cache.set('v2', (frame = JSON.stringify({ type: e.type, data: e.payload })));
      hub.send(c, frame, e.type);
    },
    closed(c, leftAt) {
      // Call presence: a user left a call when their last connection subscribed to it closed.
      for (const id of subs(c).keys()) {
        if (!hub.subscribers({ sessionId: id }).some((o) => o.user.id === c.user.id)) {
          recordCallPresence(ctx.db, id, c.user.id, false, leftAt).catch((err: unknown) =>
            log.warn({ err, session_id: id }, 'could not record call presence'),
          );
        }
      }
      subs(c).clear();
    },
  };

  app.get(
    '/api/v2/ws',
    {
      websocket: true,
      // Handshakes per user, across processes (the limiter keys on req.user, set below).
      config: { rateLimit: { max: ctx.config.rateLimitWsConnectPerMinute, timeWindow: 60_000, groupId: 'ws-connect' } },
      // The URL may carry the token: keep request logs (which print URLs) off for this route.
      logLevel: 'warn',
      schema: { hide: true },
      preValidation: async (req) => {
        const token = handshakeToken(req);
        if (!token) throw unauthenticated('Missing token: send Sec-WebSocket-Protocol: bearer, <jwt> or ?token=<jwt>');
        const user = await app.authenticateToken(token);
        if (!user) throw unauthenticated('Invalid or expired token');
        hub.admit(user.id);
        // The handshake rate limit (per user, across processes) keys on it.
        req.user = user;
        let exp: number | null = null;
        try {
          const claims = decodeJwt(token);
          exp = typeof claims.exp === 'number' ? claims.exp : null;
        } catch {
          exp = null;
        }
        req.wsAuth = { user, exp };
      },
    },
    (socket, req) => {
      const auth = req.wsAuth!;
      const c = hub.open(socket, auth.user, auth.exp, route);
      subscriptionsOf.set(c, new Map());
      reply(c, { type: 'ready', user_id: c.user.id, role: c.user.role, heartbeat_ms: hub.limits.heartbeatMs });
    },
  );
}
