import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  CALL_MIN_BILLABLE_SECONDS,
  DEFAULT_PAYOUT_RATES,
  UNIT_SECONDS,
  completedUnits,
  payoutPerUnit,
  unitBoundary,
  unitsAtEnd,
  type Money,
} from '../../src/modules/billing/pricing.js';
import { modalityForAppointmentType, sessionKindForModality } from '../../src/modules/appointments/modality.js';

const T0 = new Date('2025-03-01T10:00:00.000Z');
const after = (seconds: number): Date => new Date(T0.getTime() + seconds * 1000);

describe('constants', () => {
  it('a unit is 10 minutes; calls bill from 60 s', () => {
    expect(UNIT_SECONDS).toBe(600);
    expect(CALL_MIN_BILLABLE_SECONDS).toBe(60);
  });
});

describe('unitsAtEnd', () => {
  it.each<[string, 'text' | 'call', Date | null, number, number]>([
    // [label, kind, startedAt, elapsed seconds, units]
    ['text never activated', 'text', null, 3600, 0],
    ['text 0 s', 'text', T0, 0, 1],
    ['text 1 min', 'text', T0, 60, 1],
    ['text 9:59', 'text', T0, 599, 1],
    ['text 9:59.999', 'text', T0, 599.999, 1],
    ['text 10:00', 'text', T0, 600, 2],
    ['text 19:59', 'text', T0, 1199, 2],
    ['text 20:00', 'text', T0, 1200, 3],
    ['text 25 min', 'text', T0, 1500, 3],
    ['text 60 min', 'text', T0, 3600, 7],
    ['text clock skew (ended before activation)', 'text', T0, -30, 1],
    ['call never connected', 'call', null, 3600, 0],
    ['call 0 s', 'call', T0, 0, 0],
    ['call 59 s', 'call', T0, 59, 0],
    ['call 59.999 s', 'call', T0, 59.999, 0],
    ['call 60 s', 'call', T0, 60, 1],
    ['call 9:59', 'call', T0, 599, 1],
    ['call 10:00', 'call', T0, 600, 2],
    ['call 25 min', 'call', T0, 1500, 3],
    ['call clock skew', 'call', T0, -30, 0],
  ])('%s → %d units', (_label, kind, startedAt, seconds, units) => {
    expect(unitsAtEnd({ kind, startedAt, endedAt: after(seconds) })).toBe(units);
  });

  it('rejects invalid dates instead of returning NaN', () => {
    expect(() => unitsAtEnd({ kind: 'text', startedAt: new Date('nope'), endedAt: T0 })).toThrow(RangeError);
    expect(() => unitsAtEnd({ kind: 'call', startedAt: T0, endedAt: new Date(Number.NaN) })).toThrow(RangeError);
  });

  it('is monotonic in the end time and never below completed units', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('text' as const, 'call' as const),
        fc.integer({ min: -3_600_000, max: 86_400_000 }),
        fc.integer({ min: 0, max: 86_400_000 }),
        (kind, ms, extra) => {
          const end = new Date(T0.getTime() + ms);
          const later = new Date(end.getTime() + extra);
          const units = unitsAtEnd({ kind, startedAt: T0, endedAt: end });
          expect(Number.isInteger(units) && units >= 0).toBe(true);
          expect(unitsAtEnd({ kind, startedAt: T0, endedAt: later })).toBeGreaterThanOrEqual(units);
          expect(completedUnits(T0, end)).toBeLessThanOrEqual(units);
        },
      ),
    );
  });
});

describe('completedUnits', () => {
  it.each<[string, Date | null, number, number]>([
    ['not started', null, 3600, 0],
    ['0 s', T0, 0, 0],
    ['9:59', T0, 599, 0],
    ['10:00', T0, 600, 1],
    ['25 min', T0, 1500, 2],
    ['clock skew', T0, -600, 0],
  ])('%s → %d', (_label, startedAt, seconds, units) => {
    expect(completedUnits(startedAt, after(seconds))).toBe(units);
  });
});

describe('unitBoundary', () => {
  it.each([
    [0, '2025-03-01T10:00:00.000Z'],
    [1, '2025-03-01T10:10:00.000Z'],
    [3, '2025-03-01T10:30:00.000Z'],
  ])('%d units → %s', (units, iso) => {
    expect(unitBoundary(T0, units).toISOString()).toBe(iso);
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects %d units', (units) => {
    expect(() => unitBoundary(T0, units)).toThrow(RangeError);
  });

  it('is the first instant at which n units have completed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), (n) => {
        const boundary = unitBoundary(T0, n);
        expect(completedUnits(T0, boundary)).toBe(n);
        expect(completedUnits(T0, new Date(boundary.getTime() - 1))).toBe(n - 1);
      }),
    );
  });
});

describe('payoutPerUnit', () => {
  const mwk: Money = { currency: 'MWK', minor: 350000 };
  const usd: Money = { currency: 'USD', minor: 300 };

  it.each<[string | null, Money]>([
    ['MW', mwk],
    ['mw', mwk],
    ['MWI', mwk],
    ['Malawi', mwk],
    ['  MALAWI ', mwk],
    ['malawi', mwk],
    ['US', usd],
    ['ZA', usd],
    ['Malawian', usd],
    ['', usd],
    [null, usd],
  ])('%j → %j', (country, money) => {
    expect(payoutPerUnit(country)).toEqual(money);
  });

  it('defaults are 3500.00 MWK and 3.00 USD', () => {
    expect(DEFAULT_PAYOUT_RATES).toEqual({ mwkMinor: 350000, usdMinor: 300 });
  });

  it('uses configured rates', () => {
    const rates = { mwkMinor: 500000, usdMinor: 450 };
    expect(payoutPerUnit('MW', rates)).toEqual({ currency: 'MWK', minor: 500000 });
    expect(payoutPerUnit('KE', rates)).toEqual({ currency: 'USD', minor: 450 });
  });
});

describe('modality', () => {
  it.each([
    ['text', 'text', 'text'],
    ['audio', 'voice', 'call'],
    ['voice', 'voice', 'call'],
    ['video', 'video', 'call'],
  ] as const)('appointment type %s → modality %s → kind %s', (type, modality, kind) => {
    expect(modalityForAppointmentType(type)).toBe(modality);
    expect(sessionKindForModality(modality)).toBe(kind);
  });

  it.each(['', 'Text', 'VIDEO', ' video', 'phone', 'call'])('unknown appointment type %j → null', (type) => {
    expect(modalityForAppointmentType(type)).toBeNull();
  });
});
