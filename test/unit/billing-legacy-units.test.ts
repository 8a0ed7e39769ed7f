import { describe, expect, it } from 'vitest';
import { expectedUnits } from '../../src/modules/billing/hooks.js';
import { legacyAppointmentUnits } from '../../src/modules/billing/pricing.js';

const T0 = new Date('2026-03-01T10:00:00.000Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

describe('legacyAppointmentUnits: the elapsed-time rule for appointments without a session', () => {
  it.each([
    // [elapsed seconds, booked minutes, units]
    [0, 30, 1],
    [-600, 30, 1], // started in the future (clock skew): still at least 1
    [599, 30, 1],
    [600, 30, 2],
    [25 * 60, 30, 3],
    [29 * 60, 30, 3],
    [3 * 24 * 3600, 30, 3], // left open for days: capped by the booking
    [45 * 60, 60, 5],
    [45 * 60, 5, 1],
    [12 * 60, 15, 2],
  ])('%i s of a %i-minute booking → %i unit(s)', (seconds, minutes, units) => {
    expect(legacyAppointmentUnits({ startedAt: T0, at: at(seconds), durationMinutes: minutes })).toBe(units);
  });
});

describe('expectedUnits: what an ended session costs in total', () => {
  const base = {
    kind: 'text' as const,
    status: 'ended' as const,
    end_reason: 'ended_by_patient',
    activated_at: T0,
    connected_at: null,
    units_billed: 0,
    allowed_minutes: null as number | null,
  };
  it.each([
    ['text ended after 25 min', { ...base, ended_at: at(25 * 60) }, 3],
    ['text never activated', { ...base, activated_at: null, ended_at: at(3600) }, 0],
    ['text expired', { ...base, status: 'expired' as const, activated_at: null, ended_at: at(3600) }, 0],
    ['call 59 s', { ...base, kind: 'call' as const, activated_at: null, connected_at: T0, ended_at: at(59) }, 0],
    ['call 10:00', { ...base, kind: 'call' as const, activated_at: null, connected_at: T0, ended_at: at(600) }, 2],
    ['call missed', { ...base, kind: 'call' as const, status: 'missed' as const, activated_at: null, ended_at: at(90) }, 0],
    ['credits exhausted: what was billed', { ...base, end_reason: 'credits_exhausted', units_billed: 2, ended_at: at(20 * 60) }, 2],
    ['30-min booking left open 5 h: capped at 3', { ...base, allowed_minutes: 30, ended_at: at(5 * 3600) }, 3],
    ['30-min booking ended at 25 min: under the cap', { ...base, allowed_minutes: 30, ended_at: at(25 * 60) }, 3],
    ['instant 60 min ended at its time limit: capped at 6', { ...base, allowed_minutes: 60, ended_at: at(3600) }, 6],
    [
      'ended at the time limit 40 min after a 30-min booking',
      { ...base, end_reason: 'time_limit', allowed_minutes: 30, ended_at: at(40 * 60) },
      3,
    ],
  ])('%s → %i', (_label, s, units) => {
    expect(expectedUnits(s)).toBe(units);
  });
});
