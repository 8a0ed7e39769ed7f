/**
 * Who may keep a WebSocket, and what it may receive — the same rules for every socket endpoint
 * (sessiongate's `/api/v2/ws` and the original app's signalling socket):
 *
 * - `admit(userId)` before the upgrade: at most `maxConnectionsPerUser` open sockets per user on
 *   this process (429 `RATE_LIMITED` above it; the handshake rate itself is limited per user
 *   across processes by the HTTP rate limiter).
 * - `current(c)` before acting on a client message: the user is re-read from the database, so a
 *   deactivated, deleted or demoted user is refused and their socket closed at their next message.
 * - `mayReceive(c, parties)` before delivering a session event: the connection's CURRENT user must
 *   still have access to that session (the participants of a session never change; a user's
 *   role and existence may).
 * - Revocation: the `user.revoked` bus signal (every process, within the bus latency) and a
 *   periodic re-check of every connected user (`recheckMs`, the backstop for changes made without
 *   the signal) close a revoked user's sockets with 4003; a revoked connection receives nothing
 *   more even before its close completes.
 */
import type { Logger } from 'pino';
import type { Db, Role } from '../db/types.js';
import { DomainError } from '../lib/errors.js';
import { accessOf, type Parties } from '../modules/access.js';
import { activeUser } from '../modules/users/service.js';
import type { AuthUser } from '../plugins/auth.js';
import type { BusEvent } from '../realtime/bus.js';
import { revokedUserIds, type RevocationReason } from '../realtime/revocation.js';

/** Close code for a revoked user (4000–4999: application codes; 4001 is an expired token). */
export const CLOSE_REVOKED = 4003;

export interface GuardedConnection {
  user: AuthUser;
  /** Closes the socket (the endpoint decides how: close frame, then terminate). */
  close(code: number, reason: string): void;
}

export interface SocketAccessOptions {
  maxConnectionsPerUser: number;
  recheckMs: number;
}

export class SocketAccess<C extends GuardedConnection = GuardedConnection> {
  private readonly byUser = new Map<number, Set<C>>();
  private readonly revoked = new WeakSet<C>();
  private timer: NodeJS.Timeout | null = null;
  private rechecking = false;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly opts: SocketAccessOptions,
  ) {}

  /** Throws 429 `RATE_LIMITED` when the user already holds the maximum of sockets here. */
  admit(userId: number): void {
    const open = this.byUser.get(userId)?.size ?? 0;
    if (open >= this.opts.maxConnectionsPerUser) {
      throw new DomainError('RATE_LIMITED', `At most ${this.opts.maxConnectionsPerUser} open connections per user`, {
        max_connections: this.opts.maxConnectionsPerUser,
      });
    }
  }

  track(c: C): void {
    let set = this.byUser.get(c.user.id);
    if (!set) this.byUser.set(c.user.id, (set = new Set()));
    set.add(c);
  }

  untrack(c: C): void {
    const set = this.byUser.get(c.user.id);
    if (!set) return;
    set.delete(c);
    if (set.size === 0) this.byUser.delete(c.user.id);
  }

  isRevoked(c: C): boolean {
    return this.revoked.has(c);
  }

  /** May this connection receive an event of the session with these participants, now? */
  mayReceive(c: C, parties: Parties): boolean {
    return !this.revoked.has(c) && accessOf(c.user, parties) !== null;
  }

  /**
   * The connection's user as the database has it now; null (and the socket closed) when the
   * user was deactivated, deleted or changed role since the handshake.
   */
  async current(c: C): Promise<AuthUser | null> {
    if (this.revoked.has(c)) return null;
    const user = await activeUser(this.db, c.user.id);
    if (!user) {
      this.revokeConnection(c, 'deactivated');
      return null;
    }
    if (user.role !== c.user.role) {
      this.revokeConnection(c, 'role_changed');
      return null;
    }
    return user;
  }

  /** Consumes the revocation signal; true when the event was one (it is never sent to a client). */
  onBusEvent(e: BusEvent): boolean {
    const ids = revokedUserIds(e);
    if (ids === null) return false;
    const reason = (e.payload as { reason?: RevocationReason } | null)?.reason ?? 'deactivated';
    for (const id of ids) this.revokeUser(id, reason);
    return true;
  }

  revokeUser(userId: number, reason: RevocationReason): void {
    for (const c of [...(this.byUser.get(userId) ?? [])]) this.revokeConnection(c, reason);
  }

  /** Re-reads every connected user once; closes the sockets of those no longer active as they were. */
  async recheck(): Promise<number> {
    if (this.rechecking || this.byUser.size === 0) return 0;
    this.rechecking = true;
    let closed = 0;
    try {
      const ids = [...this.byUser.keys()];
      const current = new Map<number, Role>();
      // Bounded IN lists: a process holds thousands of users at most.
      for (let i = 0; i < ids.length; i += 1000) {
        const rows = await this.db
          .selectFrom('users')
          .select(['id', 'role'])
          .where('id', 'in', ids.slice(i, i + 1000))
          .where('deactivated_at', 'is', null)
          .execute();
        for (const r of rows) current.set(r.id, r.role);
      }
      // Only the users that were read: one who connected during the read is not in `current`
      // and must not be taken for deactivated (their handshake has just checked them).
      for (const id of ids) {
        const role = current.get(id);
        for (const c of [...(this.byUser.get(id) ?? [])]) {
          if (role === c.user.role) continue;
          this.revokeConnection(c, role === undefined ? 'deactivated' : 'role_changed');
          closed += 1;
        }
      }
    } finally {
      this.rechecking = false;
    }
    return closed;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.recheck().catch((err: unknown) => this.log.warn({ err }, 'websocket access re-check failed'));
    }, this.opts.recheckMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private revokeConnection(c: C, reason: RevocationReason): void {
    if (this.revoked.has(c)) return;
    this.revoked.add(c);
    this.untrack(c);
    this.log.info({ user_id: c.user.id, reason }, 'websocket access revoked');
    c.close(CLOSE_REVOKED, `access revoked (${reason})`);
  }
}
