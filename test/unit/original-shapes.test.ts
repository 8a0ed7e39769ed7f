/** Pure shape helpers of the original client contract: statuses, wall clocks, names, paginator. */
import { describe, expect, it } from 'vitest';
import type { AppointmentStatus } from '../../src/db/types.js';
import { APP_STATUS, paginator, splitName, wallClock, zonedInstant } from '../../src/compat/original/shapes.js';

describe('APP_STATUS', () => {
  it('gives every core status the app’s number', () => {
    const all: AppointmentStatus[] = ['pending', 'confirmed', 'in_progress', 'completed', 'missed', 'expired', 'cancelled'];
    expect(all.map((s) => APP_STATUS[s])).toEqual([0, 1, 7, 3, 2, 2, 2]);
  });
});

describe('zonedInstant / wallClock', () => {
  it('reads a wall clock in a zone without daylight saving', () => {
    expect(zonedInstant('2025-09-20', '14:30', 'Africa/Blantyre')?.toISOString()).toBe('2025-09-20T12:30:00.000Z');
    expect(zonedInstant('2025-09-20', '9:05:07', 'UTC')?.toISOString()).toBe('2025-09-20T09:05:07.000Z');
    expect(wallClock(new Date('2025-09-20T22:30:00Z'), 'Africa/Blantyre')).toEqual({ date: '2025-09-21', time: '00:30:00' });
  });

  it('handles daylight-saving changes: a skipped time names no instant, a repeated one names one of its two', () => {
    expect(zonedInstant('2026-03-29', '01:30', 'Europe/London')).toBeNull();
    expect(zonedInstant('2026-03-29', '02:30', 'Europe/London')?.toISOString()).toBe('2026-03-29T01:30:00.000Z');
    const repeated = zonedInstant('2026-10-25', '01:30', 'Europe/London')?.toISOString();
    expect(['2026-10-25T00:30:00.000Z', '2026-10-25T01:30:00.000Z']).toContain(repeated);
    expect(zonedInstant('2026-07-01', '12:00', 'America/New_York')?.toISOString()).toBe('2026-07-01T16:00:00.000Z');
  });

  it('refuses impossible dates and times', () => {
    expect(zonedInstant('2025-02-30', '10:00', 'UTC')).toBeNull();
    expect(zonedInstant('2025-13-01', '10:00', 'UTC')).toBeNull();
    expect(zonedInstant('2025-01-01', '24:00', 'UTC')).toBeNull();
    expect(zonedInstant('01/02/2025', '10:00', 'UTC')).toBeNull();
  });
});

describe('splitName / paginator', () => {
  it('splits one name into first and last', () => {
    expect(splitName('Grace  Banda Phiri')).toEqual({ first_name: 'Grace', last_name: 'Banda Phiri' });
    expect(splitName('Chikondi')).toEqual({ first_name: 'Chikondi', last_name: '' });
  });

  it('numbers pages like Laravel', () => {
    expect(paginator('/api/x', [1, 2], { page: 2, perPage: 2 }, 5)).toMatchObject({
      current_page: 2,
      last_page: 3,
      per_page: 2,
      total: 5,
      from: 3,
      to: 4,
      next_page_url: '/api/x?page=3',
      prev_page_url: '/api/x?page=1',
    });
    expect(paginator('/api/x', [], { page: 1, perPage: 10 }, 0)).toMatchObject({ last_page: 1, from: null, to: null, total: 0 });
  });
});
