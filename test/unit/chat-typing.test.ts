import { describe, expect, it, vi } from 'vitest';
import { InProcessBus, type BusEvent } from '../../src/realtime/bus.js';
import { TypingRegistry } from '../../src/modules/chat/typing.js';

const ids = { session_id: 5, session_context: 'text_session:5', appointment_id: null };
const user = { id: 1, name: 'Pat' };

describe('TypingRegistry', () => {
  it('broadcasts a start, throttles repeats, lapses after the TTL with a stop, and lists typists', async () => {
    vi.useFakeTimers();
    try {
      let now = 1_000_000;
      const bus = new InProcessBus();
      const events: BusEvent[] = [];
      bus.subscribe((e) => events.push(e));
      const reg = new TypingRegistry(bus, { ttlMs: 8_000, throttleMs: 2_500, now: () => now });
      expect(reg.set(ids, user, true, { sessionId: 5 }).published).toBe(true);
      expect(reg.current('session:5')).toEqual([{ user_id: 1, user_name: 'Pat', started_at: new Date(now).toISOString() }]);
      now += 1_000;
      expect(reg.set(ids, user, true, { sessionId: 5 }).published).toBe(false);
      now += 2_000;
      expect(reg.set(ids, user, true, { sessionId: 5 }).published).toBe(true);
      await vi.advanceTimersByTimeAsync(8_001);
      now += 8_001;
      const typing = events.filter((e) => e.type === 'typing').map((e) => (e.payload as { typing: boolean }).typing);
      expect(typing).toEqual([true, true, false]);
      expect(reg.current('session:5')).toEqual([]);
      reg.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('start/stop alternation cannot exceed two events per throttle window', async () => {
    let now = 0;
    const bus = new InProcessBus();
    const events: BusEvent[] = [];
    bus.subscribe((e) => events.push(e));
    const reg = new TypingRegistry(bus, { now: () => now });
    for (let i = 0; i < 20; i++) {
      reg.set(ids, user, i % 2 === 0, { sessionId: 5 });
      now += 100;
    }
    await new Promise((r) => setImmediate(r));
    expect(events.length).toBe(2);
    reg.close();
  });
});
