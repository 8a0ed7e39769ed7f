/**
 * Feature-flag values and the rollout phase derived from them. Pure: reading the
 * environment and the OpenFeature provider live elsewhere.
 */

/** The four session-gating flags, all defaulting to `false`. */
export const FLAG_NAMES = [
  'ENFORCE_SESSION_GATED_CHAT',
  'ENFORCE_SESSION_GATED_BILLING',
  'DISABLE_LEGACY_APPOINTMENT_TRIGGERS',
  'ALLOW_LEGACY_APPOINTMENT_CHAT',
] as const;

/** One of {@link FLAG_NAMES}. */
export type FlagName = (typeof FLAG_NAMES)[number];

/** The effective value of every flag. */
export type FlagSet = Record<FlagName, boolean>;

const TRUE_VALUES = new Set(['true', '1', 'yes', 'on']);
const FALSE_VALUES = new Set(['false', '0', 'no', 'off']);

/**
 * Parse one flag value from the environment.
 *
 * @returns `true`/`false` for `true/false/1/0/yes/no/on/off` (case-insensitive, trimmed);
 *   `undefined` when unset or blank (the caller applies the default, `false`); `'invalid'`
 *   otherwise, which must stop the process at boot (a typo like `ture` silently meaning
 *   `false` would leave enforcement off without anyone noticing).
 */
export function parseBooleanValue(raw: string | undefined): boolean | undefined | 'invalid' {
  if (raw === undefined) return undefined;
  const value = raw.trim().toLowerCase();
  if (value === '') return undefined;
  if (TRUE_VALUES.has(value)) return true;
  if (FALSE_VALUES.has(value)) return false;
  return 'invalid';
}

/** 1 = monitoring, 2 = gradual, 3 = full enforcement. */
export type RolloutPhase = 1 | 2 | 3;

/** Human names of the phases (docs/runbooks/rollout.md). */
export const PHASE_NAMES: Readonly<Record<RolloutPhase, 'monitoring' | 'gradual' | 'full'>> = Object.freeze({
  1: 'monitoring',
  2: 'gradual',
  3: 'full',
});

/**
 * The order for turning enforcement on (docs/runbooks/rollout.md): chat first, billing once
 * chat is stable, legacy triggers last. `ALLOW_LEGACY_APPOINTMENT_CHAT` is not a step here: it is
 * a compatibility switch turned OFF to reach phase 3.
 */
export const ROLLOUT_ORDER: readonly FlagName[] = Object.freeze([
  'ENFORCE_SESSION_GATED_CHAT',
  'ENFORCE_SESSION_GATED_BILLING',
  'DISABLE_LEGACY_APPOINTMENT_TRIGGERS',
]);

/**
 * Derive the rollout phase: 3 when chat and billing are enforced, legacy triggers are disabled
 * and legacy chat is not allowed; 1 when no enforcement flag is on (whatever
 * ALLOW_LEGACY_APPOINTMENT_CHAT says — it relaxes, never enforces); 2 otherwise.
 */
export function derivePhase(flags: FlagSet): RolloutPhase {
  const enforcing = ROLLOUT_ORDER.filter((name) => flags[name]).length;
  if (enforcing === ROLLOUT_ORDER.length && !flags.ALLOW_LEGACY_APPOINTMENT_CHAT) return 3;
  if (enforcing === 0) return 1;
  return 2;
}

/**
 * Enforcement flags that are off while a later step of {@link ROLLOUT_ORDER} is on (e.g. billing
 * enforced before chat), in rollout order. Empty when the rollout follows the prescribed order.
 */
export function skippedSteps(flags: FlagSet): FlagName[] {
  const lastOn = ROLLOUT_ORDER.reduce((last, name, i) => (flags[name] ? i : last), -1);
  return ROLLOUT_ORDER.slice(0, Math.max(0, lastOn)).filter((name) => !flags[name]);
}
