/**
 * Every WebSocket of the process, whichever route opened it (sessiongate's gateway `/api/v2/ws`,
 * the original app's signalling paths): one registry, one access guard, one fan-out of bus
 * events and one set of limits. A route decides what a socket may join and how an event reads on
 * its protocol; the hub decides who receives what, and when a socket must go.
 *
 * - Access (`socket-access.ts`): `admit` caps the open sockets per user (all routes together);
 *   `current` re-reads the user before a route acts on a client message; a revoked user's sockets
 *   (the bus signal on every process, or the periodic re-check) are closed with 4003.
 * - Fan-out: an event addressed to users goes to those users' sockets; a session event to the
 *   sockets subscribed to its session — or to the appointment its payload names (`appointment_id`,
 *   a conversation before its session exists) — whose user may, NOW, see that session; `resync`
 *   to every socket. The socket's route turns the event into its frames (`deliver`).
 * - Limits: frames ≤ `maxPayloadBytes` (the `ws` server, websocket.ts); ≤ `maxMessagesPerSecond`
 *   client messages a second (the excess answered `RATE_LIMITED`, 4× that closes 1008); a socket
 *   whose unsent buffer exceeds `maxBufferedBytes` is a slow consumer and is terminated; a
 *   heartbeat ping every `heartbeatMs` (a socket that missed the previous pong is terminated); an
 *   expiring token closes the socket (4001). `websocket_connections` counts the open sockets.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { AppContext } from '../context.js';
import type { Parties } from '../modules/access.js';
import type { AuthUser } from '../plugins/auth.js';
import type { BusEvent } from '../realtime/bus.js';
import { SocketAccess, type GuardedConnection } from './socket-access.js';

export interface SocketLimits {
  heartbeatMs: number;
  maxPayloadBytes: number;
  maxBufferedBytes: number;
  maxMessagesPerSecond: number;
}

/** The limits of every socket route. */
export const SOCKET_LIMITS: SocketLimits = {
  heartbeatMs: 30_000,
  maxPayloadBytes: 64 * 1024,
  maxBufferedBytes: 1024 * 1024,
  maxMessagesPerSecond: 50,
};

/**
 * Serialised frames of the event being fanned out, by the route's own key: a route that sends
 * every receiver the same frame serialises it once.
 */
export type FrameCache = Map<string, string>;

export interface SocketRoute {
  /** Turns an event this socket may receive into its frames (the hub has checked access). */
  deliver(c: HubSocket, e: BusEvent, cache: FrameCache): void;
  /** A client message: its text, or null for a binary frame (within the rate limit). */
  receive(c: HubSocket, text: string | null): Promise<void>;
  /** After the hub forgot the socket (subscriptions, user); `leftAt` is its last sign of life. */
  closed?(c: HubSocket, leftAt: Date): void;
}

export interface HubSocket extends GuardedConnection {
  readonly socket: WebSocket;
  user: AuthUser;
}

interface Socket extends HubSocket {
  route: SocketRoute;
  alive: boolean;
  lastSeen: Date;
  window: { second: number; count: number };
  expiry: NodeJS.Timeout | null;
  topics: Set<string>;
}

const sessionTopic = (id: number) => `s:${id}`;
const appointmentTopic = (id: number) => `a:${id}`;
/** What a subscription names: a session, or an appointment before its session exists. */
export type Topic = { sessionId: number } | { appointmentId: number };
const topicKey = (t: Topic) => ('sessionId' in t ? sessionTopic(t.sessionId) : appointmentTopic(t.appointmentId));

function textOf(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): string | null {
  if (isBinary) return null;
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  return Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
}

export class SocketHub {
  readonly limits: SocketLimits;
  private readonly access: SocketAccess<Socket>;
  private readonly all = new Set<Socket>();
  private readonly byUser = new Map<number, Set<Socket>>();
  private readonly byTopic = new Map<string, Map<Socket, Parties>>();
  private readonly log: Logger;
  private heartbeat: NodeJS.Timeout | null = null;
  private unsubscribeBus: (() => void) | null = null;

  constructor(
    private readonly ctx: AppContext,
    limits: Partial<SocketLimits> = {},
  ) {
    this.limits = { ...SOCKET_LIMITS, ...limits };
    this.log = ctx.log.child({ component: 'ws' });
    this.access = new SocketAccess<Socket>(ctx.db, this.log, {
      maxConnectionsPerUser: ctx.config.wsMaxConnectionsPerUser,
      recheckMs: ctx.config.wsAccessRecheckSeconds * 1000,
    });
  }

  start(): void {
    this.access.start();
    this.unsubscribeBus = this.ctx.bus.subscribe((e) => this.dispatch(e));
    this.heartbeat = setInterval(() => this.beat(), this.limits.heartbeatMs);
    this.heartbeat.unref();
  }

  stop(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.access.stop();
    this.unsubscribeBus?.();
    this.unsubscribeBus = null;
  }

  /** Before the upgrade: throws 429 `RATE_LIMITED` when the user already holds the maximum of sockets. */
  admit(userId: number): void {
    this.access.admit(userId);
  }

  /** Takes an upgraded socket: from now on it is heart-beaten, rate-limited, guarded and fed events. */
  open(socket: WebSocket, user: AuthUser, tokenExp: number | null, route: SocketRoute): HubSocket {
    const c: Socket = {
      socket,
      user,
      route,
      alive: true,
      lastSeen: new Date(),
      window: { second: 0, count: 0 },
      expiry: null,
      topics: new Set(),
      close: (code, reason) => {
        socket.close(code, reason);
        // A client that does not answer the close frame is cut off.
        setTimeout(() => socket.terminate(), 1000).unref();
      },
    };
    this.all.add(c);
    this.access.track(c);
    this.index(this.byUser, c.user.id, c);
    this.ctx.metrics.realtime.connections.inc();
    if (tokenExp !== null) {
      const ms = Math.max(0, tokenExp * 1000 - Date.now());
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
      if (this.withinRate(c)) void route.receive(c, textOf(data, isBinary));
    });
    socket.on('close', () => this.forget(c));
    return c;
  }

  /**
   * The socket's user as the database has it now, or null when the user was deactivated, deleted
   * or changed role since the handshake (the socket is then closed). Call before acting on a
   * client message.
   */
  async current(c: HubSocket): Promise<AuthUser | null> {
    const user = await this.access.current(c as Socket);
    if (user) c.user = user;
    return user;
  }

  /** From now on `c` receives the events of the topic, while its user may see a conversation of these parties. */
  subscribe(c: HubSocket, topic: Topic, parties: Parties): void {
    const key = topicKey(topic);
    let subs = this.byTopic.get(key);
    if (!subs) this.byTopic.set(key, (subs = new Map()));
    subs.set(c as Socket, { patient_id: parties.patient_id, doctor_id: parties.doctor_id });
    (c as Socket).topics.add(key);
  }

  unsubscribe(c: HubSocket, topic: Topic): boolean {
    const key = topicKey(topic);
    (c as Socket).topics.delete(key);
    const subs = this.byTopic.get(key);
    if (!subs?.delete(c as Socket)) return false;
    if (subs.size === 0) this.byTopic.delete(key);
    return true;
  }

  subscriptionCount(c: HubSocket): number {
    return (c as Socket).topics.size;
  }

  /** The open sockets subscribed to a topic. */
  subscribers(topic: Topic): HubSocket[] {
    return [...(this.byTopic.get(topicKey(topic))?.keys() ?? [])];
  }

  /** Sends a frame; a consumer too slow to drain its buffer is cut off. `label` names it in the metrics. */
  send(c: HubSocket, frame: string, label: string): void {
    const { socket } = c;
    if (socket.readyState !== socket.OPEN) return;
    if (socket.bufferedAmount > this.limits.maxBufferedBytes) {
      this.log.warn({ user_id: c.user.id, buffered: socket.bufferedAmount }, 'websocket slow consumer terminated');
      socket.terminate();
      return;
    }
    socket.send(frame);
    this.ctx.metrics.realtime.events.inc({ event: label });
  }

  private dispatch(e: BusEvent): void {
    if (this.access.onBusEvent(e)) return;
    const cache: FrameCache = new Map();
    // `resync` (the bus may have missed events), or an event addressed to users: the user must
    // only not be revoked.
    if (e.broadcast || e.userIds !== undefined) {
      const targets = new Set<Socket>();
      if (e.broadcast) for (const c of this.all) targets.add(c);
      else for (const uid of e.userIds!) for (const c of this.byUser.get(uid) ?? []) targets.add(c);
      for (const c of targets) if (!this.access.isRevoked(c)) c.route.deliver(c, e, cache);
      return;
    }
    if (e.sessionId === undefined) return;
    // A session event also reaches who follows the session's appointment (its session unknown to them yet).
    const appointmentId = (e.payload as { appointment_id?: unknown } | null)?.appointment_id;
    const keys = [sessionTopic(e.sessionId)];
    if (typeof appointmentId === 'number') keys.push(appointmentTopic(appointmentId));
    const seen = new Set<Socket>();
    for (const key of keys) {
      for (const [c, parties] of this.byTopic.get(key) ?? []) {
        if (seen.has(c)) continue;
        seen.add(c);
        // The socket's CURRENT user must still have access to the session.
        if (this.access.mayReceive(c, parties)) c.route.deliver(c, e, cache);
      }
    }
  }

  /** Counts a client message in its second; false when it is over the limit (answered or closed). */
  private withinRate(c: Socket): boolean {
    const max = this.limits.maxMessagesPerSecond;
    const second = Math.floor(Date.now() / 1000);
    if (c.window.second !== second) c.window = { second, count: 0 };
    c.window.count += 1;
    if (c.window.count > max * 4) {
      c.socket.close(1008, 'rate limit exceeded');
      return false;
    }
    if (c.window.count > max) {
      if (c.window.count === max + 1)
        this.send(c, JSON.stringify({ type: 'error', error_code: 'RATE_LIMITED', message: 'Too many messages; slow down' }), 'error');
      return false;
    }
    return true;
  }

  private beat(): void {
    for (const c of this.all) {
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
  }

  private forget(c: Socket): void {
    this.all.delete(c);
    this.access.untrack(c);
    const mine = this.byUser.get(c.user.id);
    mine?.delete(c);
    if (mine?.size === 0) this.byUser.delete(c.user.id);
    for (const key of c.topics) {
      const subs = this.byTopic.get(key);
      subs?.delete(c);
      if (subs?.size === 0) this.byTopic.delete(key);
    }
    c.topics.clear();
    if (c.expiry) clearTimeout(c.expiry);
    this.ctx.metrics.realtime.connections.dec();
    // A socket that missed heartbeats left at its last sign of life.
    c.route.closed?.(c, c.alive ? new Date() : c.lastSeen);
  }

  private index(map: Map<number, Set<Socket>>, key: number, c: Socket): void {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(c);
  }
}
