/**
 * Billing unit math and doctor payouts. Pure: the clock is passed in.
 *
 * Terminology:
 * - unit            — 10 minutes of consultation, the thing a credit buys;
 * - units at end    — what a whole session costs: `floor(elapsed / 10 min) + 1`, so the first
 *                     unit is charged as soon as billable time starts;
 * - completed units — units fully elapsed while the session still runs; the periodic billing
 *                     tick may charge these, and the end charges the remainder;
 * - billable start  — `activated_at` (doctor's first message) for text, `connected_at` (both
 *                     joined) for calls; without it the session costs nothing.
 */
import type { SessionKind } from '../session-context.js';

/** Length of one billing unit in seconds (10 minutes). */
export const UNIT_SECONDS = 600;

/** A call connected for less than this many seconds costs nothing (dropped/misdialled calls). */
export const CALL_MIN_BILLABLE_SECONDS = 60;

const UNIT_MS = UNIT_SECONDS * 1000;
const CALL_MIN_BILLABLE_MS = CALL_MIN_BILLABLE_SECONDS * 1000;

/** Money in integer minor units (tambala / cents), never floats. */
export type Money = { currency: 'MWK' | 'USD'; minor: number };

/** Doctor payout per charged unit, in minor units of each wallet currency. */
export interface PayoutRates {
  mwkMinor: number;
  usdMinor: number;
}

/** 3500.00 MWK for doctors in Malawi, 3.00 USD for everyone else. */
export const DEFAULT_PAYOUT_RATES: PayoutRates = Object.freeze({ mwkMinor: 350000, usdMinor: 300 });

function timeOf(d: Date, name: string): number {
  const t = d.getTime();
  // An Invalid Date would turn every result into NaN and a NaN unit count into a bad charge.
  if (Number.isNaN(t)) throw new RangeError(`${name} is an invalid Date`);
  return t;
}

/** Elapsed milliseconds, clamped at 0 so clock skew between hosts never yields negative time. */
function elapsedMs(from: Date, to: Date): number {
  return Math.max(0, timeOf(to, 'end') - timeOf(from, 'start'));
}

/**
 * Units a session costs when it ends.
 *
 * - text: from `activated_at`; never activated (`startedAt` null) → 0;
 * - call: from `connected_at`; never connected → 0; connected < 60 s → 0;
 * - otherwise `floor(elapsed / 10 min) + 1` (negative elapsed counts as 0).
 */
export function unitsAtEnd(input: { kind: SessionKind; startedAt: Date | null; endedAt: Date }): number {
  if (input.startedAt === null) return 0;
  const elapsed = elapsedMs(input.startedAt, input.endedAt);
  if (input.kind === 'call' && elapsed < CALL_MIN_BILLABLE_MS) return 0;
  return Math.floor(elapsed / UNIT_MS) + 1;
}

/**
 * Units fully elapsed by `now` while the session runs: `floor(elapsed / 10 min)`; 0 when not
 * started. Always ≤ {@link unitsAtEnd} for the same instant, so the periodic tick never charges
 * more than the end would.
 */
export function completedUnits(startedAt: Date | null, now: Date): number {
  if (startedAt === null) return 0;
  return Math.floor(elapsedMs(startedAt, now) / UNIT_MS);
}

/**
 * The instant `units` units after `startedAt`: where a session is ended when the patient's
 * credits cover exactly `units` units.
 */
export function unitBoundary(startedAt: Date, units: number): Date {
  if (!Number.isSafeInteger(units) || units < 0) {
    throw new RangeError(`units must be a non-negative integer, got ${units}`);
  }
  return new Date(timeOf(startedAt, 'startedAt') + units * UNIT_MS);
}

// ISO 3166 alpha-2, alpha-3 and the English name; stored country values were free text.
const MALAWI = new Set(['mw', 'mwi', 'malawi']);

/**
 * The doctor's payout for one charged unit: MWK when the doctor's country is Malawi (`MW`,
 * `MWI` or `Malawi`, case-insensitive, trimmed), USD otherwise (including unknown country).
 */
export function payoutPerUnit(doctorCountry: string | null, rates: PayoutRates = DEFAULT_PAYOUT_RATES): Money {
  if (doctorCountry !== null && MALAWI.has(doctorCountry.trim().toLowerCase())) {
    return { currency: 'MWK', minor: rates.mwkMinor };
  }
  return { currency: 'USD', minor: rates.usdMinor };
}

/**
 * The most units a consultation may cost: the units its allowed time covers,
 * `ceil(allowed / 10 min)`, at least 1. The allowed time is the booking's duration for a booked
 * session or a legacy appointment, INSTANT_SESSION_MAX_MINUTES for an instant session (fixed on
 * the session when it is created: `sessions.allowed_minutes`); `null` (sessions created before
 * the allowance existed) means no cap. The overrun a booked session may run past its booked end
 * (SESSION_OVERRUN_MINUTES) is grace, never billed.
 */
export function unitCap(allowedMinutes: number | null): number {
  if (allowedMinutes === null) return Number.POSITIVE_INFINITY;
  return Math.max(1, Math.ceil((allowedMinutes * 60) / UNIT_SECONDS));
}

/**
 * THE billing cap: `units` limited to what the allowed time covers. Session settlement, the
 * periodic billing tick and the legacy billing endpoints all charge through this.
 */
export function cappedUnits(units: number, allowedMinutes: number | null): number {
  return Math.min(units, unitCap(allowedMinutes));
}

/**
 * Units a legacy appointment (one that has no session) costs when billed through the legacy
 * endpoints: the same `floor(elapsed / 10 min) + 1` rule, with time running from when the legacy
 * flow started it (`legacy_started_at`, else `scheduled_at`), at least 1, and capped by
 * {@link cappedUnits} with the booked duration as the allowed time: an appointment left open for
 * days must not turn into hundreds of units.
 */
export function legacyAppointmentUnits(input: { startedAt: Date; at: Date; durationMinutes: number }): number {
  const units = Math.floor(elapsedMs(input.startedAt, input.at) / UNIT_MS) + 1;
  return cappedUnits(units, input.durationMinutes);
}
