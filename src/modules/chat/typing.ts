/**
 * Typing indicators: ephemeral, never stored.
 *
 * - A `typing: true` is published on the bus with `expires_at` = now + 8 s; clients drop it then
 *   unless a refresh arrives. The process that published it also publishes `typing: false` when
 *   it lapses, so a client that vanished mid-sentence does not leave "typing…" behind.
 * - Throttle: per (user, conversation) at most one `typing: true` broadcast per 2.5 s; repeats in
 *   between answer `throttled: true` and are not re-broadcast (keystroke-rate clients cost one
 *   event per 2.5 s). A stop is broadcast only if the user is known to be typing.
 * - Every process keeps a view of who is typing, fed by the bus (its own events included), so the
 *   legacy `typing_users` list is the same whichever process answers.
 * The throttle is per process: a client that alternates between processes can be broadcast a
 * little more often. That is harmless for an ephemeral signal.
 */
import type { EventBus } from '../../realtime/bus.js';
import { publishEvent, type ChatScopeIds, type TypingEventData } from '../../realtime/events.js';

export const TYPING_TTL_MS = 8_000;
export const TYPING_THROTTLE_MS = 2_500;

export interface Typist {
  user_id: number;
  user_name: string;
  started_at: string;
}

interface LocalState {
  lastStartAt: number;
  typing: boolean;
  timer: NodeJS.Timeout | null;
}

interface SeenState {
  user_name: string;
  startedAt: number;
  expiresAt: number;
}

/** `session:{id}` or `appointment:{id}`: the conversation a typing signal belongs to. */
export const typingKey = (ids: ChatScopeIds) => (ids.session_id !== null ? `session:${ids.session_id}` : `appointment:${ids.appointment_id}`);

export class TypingRegistry {
  private readonly local = new Map<string, LocalState>();
  private readonly seen = new Map<string, Map<number, SeenState>>();
  private readonly unsubscribe: () => void;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly bus: EventBus,
    private readonly opts: { ttlMs?: number; throttleMs?: number; now?: () => number } = {},
  ) {
    this.unsubscribe = bus.subscribe((e) => {
      if (e.type === 'typing') this.observe(e.payload as TypingEventData);
    });
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  private get ttl() {
    return this.opts.ttlMs ?? TYPING_TTL_MS;
  }
  private get throttle() {
    return this.opts.throttleMs ?? TYPING_THROTTLE_MS;
  }
  private now() {
    return this.opts.now?.() ?? Date.now();
  }

  /**
   * Records a typing start or stop of `user` in a conversation and broadcasts it (to the
   * session's subscribers, or to `userIds` for pre-session appointment chat).
   */
  set(
    ids: ChatScopeIds,
    user: { id: number; name: string },
    typing: boolean,
    route: { sessionId?: number; userIds?: number[] },
  ): { published: boolean; expiresAt: Date | null } {
    const key = `${typingKey(ids)}:${user.id}`;
    const now = this.now();
    const state = this.local.get(key) ?? { lastStartAt: -Infinity, typing: false, timer: null };
    this.local.set(key, state);
    const emit = (on: boolean, expiresAt: number | null) => {
      const data: TypingEventData = {
        ...ids,
        user_id: user.id,
        user_name: user.name,
        typing: on,
        expires_at: expiresAt === null ? null : new Date(expiresAt).toISOString(),
      };
      // Seen here at once (the bus echo arrives a tick later and is idempotent), so the caller's
      // own answer already lists the user.
      this.observe(data);
      publishEvent(this.bus, 'typing', data, route);
    };

    if (typing) {
      // Throttled against the last broadcast start whether or not a stop came in between, so
      // alternating start/stop cannot exceed two events per window.
      if (now - state.lastStartAt < this.throttle) {
        return { published: false, expiresAt: state.typing ? new Date(state.lastStartAt + this.ttl) : null };
      }
      state.lastStartAt = now;
      state.typing = true;
      const expiresAt = now + this.ttl;
      if (state.timer) clearTimeout(state.timer);
      state.timer = setTimeout(() => {
        state.timer = null;
        if (!state.typing) return;
        state.typing = false;
        emit(false, null);
      }, this.ttl);
      state.timer.unref();
      emit(true, expiresAt);
      return { published: true, expiresAt: new Date(expiresAt) };
    }

    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
    const knownTyping = state.typing || this.isTyping(typingKey(ids), user.id);
    state.typing = false;
    if (knownTyping) emit(false, null);
    return { published: knownTyping, expiresAt: null };
  }

  /** Who is typing in a conversation right now (any process). */
  current(conversationKey: string): Typist[] {
    const now = this.now();
    const users = this.seen.get(conversationKey);
    if (!users) return [];
    return [...users.entries()]
      .filter(([, s]) => s.expiresAt > now)
      .map(([user_id, s]) => ({ user_id, user_name: s.user_name, started_at: new Date(s.startedAt).toISOString() }));
  }

  private isTyping(conversationKey: string, userId: number): boolean {
    const s = this.seen.get(conversationKey)?.get(userId);
    return s !== undefined && s.expiresAt > this.now();
  }

  private observe(e: TypingEventData): void {
    const key = typingKey(e);
    let users = this.seen.get(key);
    if (!e.typing) {
      users?.delete(e.user_id);
      if (users?.size === 0) this.seen.delete(key);
      return;
    }
    if (!users) this.seen.set(key, (users = new Map()));
    const now = this.now();
    const prev = users.get(e.user_id);
    const expiresAt = e.expires_at ? Date.parse(e.expires_at) : now + this.ttl;
    users.set(e.user_id, { user_name: e.user_name, startedAt: prev && prev.expiresAt > now ? prev.startedAt : now, expiresAt });
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, s] of this.local) {
      if (!s.typing && now - s.lastStartAt > this.throttle + this.ttl) this.local.delete(key);
    }
    for (const [key, users] of this.seen) {
      for (const [uid, s] of users) if (s.expiresAt <= now) users.delete(uid);
      if (users.size === 0) this.seen.delete(key);
    }
  }

  close(): void {
    this.unsubscribe();
    clearInterval(this.sweeper);
    for (const s of this.local.values()) if (s.timer) clearTimeout(s.timer);
    this.local.clear();
    this.seen.clear();
  }
}
