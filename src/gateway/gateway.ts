/**
 * The WebSocket gateway at `GET /api/v2/ws` (protocol: `events.ts`).
 *
 * - Authentication on connect: the JWT in `Sec-WebSocket-Protocol: bearer, <jwt>` (the server
 *   answers with the `bearer` sub-protocol, never echoing the token) or `?token=<jwt>`. Without a
 *   valid token the upgrade is refused with HTTP 401 — no socket is ever opened for a stranger
 *   (reference §7 bug 20). The connection closes (4001) when the token expires.
 * - A client subscribes to sessions by context. Participants and admins may subscribe (admins
 *   read-only: they receive events but cannot send typing or call signals); anyone else is
 *   refused. Events reach the connections subscribed to their session; events addressed to users
 *   (notifications, call signals) reach those users' connections.
 * - `call.signal` relays WebRTC offer / answer / ICE to the OTHER participant of a live call
 *   session only; the sender is the authenticated user.
 * - Limits: frames ≤ 64 KiB (larger → close 1009); ≤ 50 client messages per second (excess
 *   answered RATE_LIMITED, ≥ 200 in a second → close 1008); a connection whose unsent buffer
 *   exceeds 1 MiB is a slow consumer and is terminated (it reconnects and catches up from
 *   `GET …/messages?after=`); heartbeat ping every 30 s, a connection that missed the previous
 *   pong is terminated. `websocket_connections` is the gauge of open connections.
 * - `resync` goes to every connection when the process's event bus may have missed events (its
 *   LISTEN connection was lost and is back): clients re-read what they show.
 * - Access is not fixed at the handshake (`socket-access.ts`): at most WS_MAX_CONNECTIONS_PER_USER
 *   sockets per user; every client message re-reads the user, every session event is checked
 *   against the connection's current access, and a revoked user's sockets are closed (4003).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { decodeJwt } from 'jose';
import type { WebSocket } from 'ws';
import { DomainError, forbidden, invalid, unauthenticated } from '../lib/errors.js';
import type { AuthUser } from '../plugins/auth.js';
import { accessOf, assertParticipant } from '../modules/access.js';
import { sessionScope, setTyping } from '../modules/chat/service.js';
import { contextOf, freshSession, participantSession, sessionByContext } from '../modules/sessions/service.js';
import { recordCallPresence } from '../modules/sessions/limits.js';
import { isLive } from '../modules/sessions/state.js';
import type { BusEvent } from '../realtime/bus.js';
import { parseClientMessage, publishEvent, type ClientMessage } from '../realtime/events.js';
import websocketSupport from './websocket.js';
import { SocketAccess } from './socket-access.js';

export interface GatewayOptions {
  heartbeatMs?: number;
  maxPayloadBytes?: number;
  maxBufferedBytes?: number;
  maxMessagesPerSecond?: number;
  maxSubscriptions?: number;
}

/** The gateway's limits (frame size, rate, heartbeat); other socket routes use the same. */
export const DEFAULTS = {
  heartbeatMs: 30_000,
  maxPayloadBytes: 64 * 1024,
  maxBufferedBytes: 1024 * 1024,
  maxMessagesPerSecond: 50,
  maxSubscriptions: 100,
};

interface Subscription {
  sessionId: number;
  context: string;
  patient_id: number;
  doctor_id: number;
}

interface Connection {
  socket: WebSocket;
  user: AuthUser;
  subscriptions: Map<number, Subscription>;
  alive: boolean;
  /** The last sign of life (a pong or a message): when a connection that missed heartbeats left. */
  lastSeen: Date;
  window: { second: number; count: number };
  expiry: NodeJS.Timeout | null;
  close(code: number, reason: string): void;
}

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
  const o = { ...DEFAULTS, ...opts };
  const { ctx } = app;
  const log = ctx.log.child({ component: 'ws' });
  const byUser = new Map<number, Set<Connection>>();
  const bySession = new Map<number, Set<Connection>>();
  const all = new Set<Connection>();
  const access = new SocketAccess<Connection>(ctx.db, log, {
    maxConnectionsPerUser: ctx.config.wsMaxConnectionsPerUser,
    recheckMs: ctx.config.wsAccessRecheckSeconds * 1000,
  });
  access.start();

  // The app registers WebSocket support once at its root (app.ts); a gateway built alone brings its
  // own. `bearer` is selected when offered; the JWT (the other offered value) is never echoed.
  if (!app.hasDecorator('websocketServer')) {
    await app.register(websocketSupport, { maxPayloadBytes: o.maxPayloadBytes, protocols: ['bearer'] });
  }
  app.decorateRequest('wsAuth', null);

  const add = <K>(map: Map<K, Set<Connection>>, key: K, c: Connection) => {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(c);
  };
  const remove = <K>(map: Map<K, Set<Connection>>, key: K, c: Connection) => {
    const set = map.get(key);
    if (!set) return;
    set.delete(c);
    if (set.size === 0) map.delete(key);
  };

  /** Sends a serialised frame; a consumer too slow to drain its buffer is cut off. */
  const sendRaw = (c: Connection, frame: string, type: string): void => {
    if (c.socket.readyState !== c.socket.OPEN) return;
    if (c.socket.bufferedAmount > o.maxBufferedBytes) {
      log.warn({ user_id: c.user.id, buffered: c.socket.bufferedAmount }, 'websocket slow consumer terminated');
      c.socket.terminate();
      return;
    }
    c.socket.send(frame);
    ctx.metrics.realtime.events.inc({ event: type });
  };
  const reply = (c: Connection, frame: Record<string, unknown>) => sendRaw(c, JSON.stringify(frame), String(frame['type']));

  const dispatch = (e: BusEvent): void => {
    if (access.onBusEvent(e)) return;
    let targets: Iterable<Connection> | undefined;
    // `resync` (the bus may have missed events): every connection re-reads what it shows.
    if (e.broadcast) targets = all;
    else if (e.userIds !== undefined) {
      const set = new Set<Connection>();
      for (const uid of e.userIds) for (const c of byUser.get(uid) ?? []) set.add(c);
      targets = set;
    } else if (e.sessionId !== undefined) {
      targets = bySession.get(e.sessionId);
    }
    if (!targets) return;
    let frame: string | null = null;
    for (const c of targets) {
      // A session event needs the connection's current access to that session; a broadcast or an
      // event addressed to the user needs only that the user is not revoked.
      const allowed =
        e.broadcast || e.userIds !== undefined ? !access.isRevoked(c) : access.mayReceive(c, c.subscriptions.get(e.sessionId!)!);
      if (!allowed) continue;
      frame ??= JSON.stringify({ type: e.type, data: e.payload });
      sendRaw(c, frame, e.type);
    }
  };
  const unsubscribeBus = ctx.bus.subscribe(dispatch);

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
  }, o.heartbeatMs);
  heartbeat.unref();

  app.addHook('onClose', async () => {
    clearInterval(heartbeat);
    access.stop();
    unsubscribeBus();
  });

  const handlers: {
    [K in ClientMessage['type']]: (c: Connection, m: Extract<ClientMessage, { type: K }>) => Promise<Record<string, unknown>>;
  } = {
    async subscribe(c, m) {
      const s = await sessionByContext(ctx.db, m.session_context);
      const access = accessOf(c.user, s);
      if (!access) throw forbidden('You are not a participant of this session');
      if (!c.subscriptions.has(s.id)) {
        if (c.subscriptions.size >= o.maxSubscriptions) throw invalid(`At most ${o.maxSubscriptions} subscriptions per connection`);
        c.subscriptions.set(s.id, { sessionId: s.id, context: contextOf(s), patient_id: s.patient_id, doctor_id: s.doctor_id });
        add(bySession, s.id, c);
      }
      if (s.kind === 'call' && access !== 'admin') await recordCallPresence(ctx.db, s.id, c.user.id, true, new Date());
      return { type: 'subscribed', session_context: contextOf(s), session_id: s.id, session_status: s.status, access };
    },
    async unsubscribe(c, m) {
      const s = await sessionByContext(ctx.db, m.session_context);
      if (c.subscriptions.delete(s.id)) remove(bySession, s.id, c);
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

  const onMessage = async (c: Connection, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): Promise<void> => {
    const second = Math.floor(Date.now() / 1000);
    if (c.window.second !== second) c.window = { second, count: 0 };
    c.window.count += 1;
    if (c.window.count > o.maxMessagesPerSecond * 4) {
      c.socket.close(1008, 'rate limit exceeded');
      return;
    }
    if (c.window.count > o.maxMessagesPerSecond) {
      if (c.window.count === o.maxMessagesPerSecond + 1)
        reply(c, { type: 'error', error_code: 'RATE_LIMITED', message: 'Too many messages; slow down' });
      return;
    }
    const text = isBinary
      ? null
      : Buffer.isBuffer(data)
        ? data.toString('utf8')
        : Array.isArray(data)
          ? Buffer.concat(data).toString('utf8')
          : Buffer.from(data).toString('utf8');
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
        const user = await access.current(c);
        if (!user) return;
        c.user = user;
      }
      const handler = handlers[m.type] as (c: Connection, m: ClientMessage) => Promise<Record<string, unknown>>;
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
        access.admit(user.id);
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
      const c: Connection = {
        socket,
        user: auth.user,
        subscriptions: new Map(),
        alive: true,
        lastSeen: new Date(),
        window: { second: 0, count: 0 },
        expiry: null,
        close: (code, reason) => {
          socket.close(code, reason);
          // A client that does not answer the close frame is cut off.
          setTimeout(() => socket.terminate(), 1000).unref();
        },
      };
      all.add(c);
      access.track(c);
      add(byUser, c.user.id, c);
      ctx.metrics.realtime.connections.inc();
      if (auth.exp !== null) {
        const ms = Math.max(0, auth.exp * 1000 - Date.now());
        // setTimeout overflows above 2^31-1 ms (~24.8 days); such tokens outlive any connection anyway.
        if (ms < 2 ** 31 - 1) {
          c.expiry = setTimeout(() => socket.close(4001, 'token expired'), ms);
          c.expiry.unref();
        }
      }
      socket.on('pong', () => {
        c.alive = true;
        c.lastSeen = new Date();
      });
      socket.on('message', (data, isBinary) => {
        c.lastSeen = new Date();
        void onMessage(c, data, isBinary);
      });
      socket.on('close', () => {
        all.delete(c);
        access.untrack(c);
        remove(byUser, c.user.id, c);
        // Call presence: a user left a call when their last connection subscribed to it closed
        // (a connection that missed heartbeats left at its last sign of life).
        const leftAt = c.alive ? new Date() : c.lastSeen;
        for (const id of c.subscriptions.keys()) {
          remove(bySession, id, c);
          if (![...(bySession.get(id) ?? [])].some((o) => o.user.id === c.user.id)) {
            recordCallPresence(ctx.db, id, c.user.id, false, leftAt).catch((err: unknown) =>
              log.warn({ err, session_id: id }, 'could not record call presence'),
            );
          }
        }
        c.subscriptions.clear();
        if (c.expiry) clearTimeout(c.expiry);
        ctx.metrics.realtime.connections.dec();
      });
      reply(c, { type: 'ready', user_id: c.user.id, role: c.user.role, heartbeat_ms: o.heartbeatMs });
    },
  );
}
