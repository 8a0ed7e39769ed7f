import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  FLAG_NAMES,
  PHASE_NAMES,
  ROLLOUT_ORDER,
  derivePhase,
  parseBooleanValue,
  skippedSteps,
  type FlagName,
  type FlagSet,
  type RolloutPhase,
} from '../../src/config/flag-values.js';

/** Build a flag set with the named flags on; short names keep the tables readable. */
const SHORT: Record<string, FlagName> = {
  chat: 'ENFORCE_SESSION_GATED_CHAT',
  billing: 'ENFORCE_SESSION_GATED_BILLING',
  triggers: 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS',
  allow: 'ALLOW_LEGACY_APPOINTMENT_CHAT',
};
function flagsOn(...names: string[]): FlagSet {
  const set = Object.fromEntries(FLAG_NAMES.map((n) => [n, false])) as FlagSet;
  for (const name of names) set[SHORT[name] as FlagName] = true;
  return set;
}

describe('parseBooleanValue', () => {
  it.each<[string | undefined, boolean | undefined | 'invalid']>([
    [undefined, undefined],
    ['', undefined],
    ['   ', undefined],
    ['true', true],
    ['TRUE', true],
    [' True ', true],
    ['1', true],
    ['yes', true],
    ['YES', true],
    ['on', true],
    ['On', true],
    ['false', false],
    ['False', false],
    ['0', false],
    ['no', false],
    ['off', false],
    ['OFF\n', false],
    ['ture', 'invalid'],
    ['2', 'invalid'],
    ['-1', 'invalid'],
    ['01', 'invalid'],
    ['y', 'invalid'],
    ['n', 'invalid'],
    ['enabled', 'invalid'],
    ['true false', 'invalid'],
    ['"true"', 'invalid'],
  ])('%j → %j', (raw, expected) => {
    expect(parseBooleanValue(raw)).toBe(expected);
  });

  it('any other string is invalid', () => {
    const accepted = new Set(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off', '']);
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), (raw) => {
        fc.pre(!accepted.has(raw.trim().toLowerCase()));
        expect(parseBooleanValue(raw)).toBe('invalid');
      }),
    );
  });
});

describe('derivePhase', () => {
  it.each<[string[], RolloutPhase]>([
    [[], 1],
    [['allow'], 1],
    [['chat'], 2],
    [['chat', 'allow'], 2],
    [['billing'], 2],
    [['triggers'], 2],
    [['chat', 'billing'], 2],
    [['chat', 'billing', 'triggers', 'allow'], 2],
    [['chat', 'billing', 'triggers'], 3],
  ])('%j → phase %d', (on, phase) => {
    expect(derivePhase(flagsOn(...on))).toBe(phase);
  });

  it('is 3 for exactly one of the 16 combinations, 1 for exactly two', () => {
    const combos = Array.from({ length: 16 }, (_, bits) =>
      flagsOn(...['chat', 'billing', 'triggers', 'allow'].filter((_, i) => (bits >> i) & 1)),
    );
    expect(combos.filter((f) => derivePhase(f) === 3)).toEqual([flagsOn('chat', 'billing', 'triggers')]);
    expect(combos.filter((f) => derivePhase(f) === 1)).toEqual([flagsOn(), flagsOn('allow')]);
  });

  it('names the phases', () => {
    expect(PHASE_NAMES).toEqual({ 1: 'monitoring', 2: 'gradual', 3: 'full' });
  });
});

describe('skippedSteps', () => {
  it('rollout order is chat, billing, triggers', () => {
    expect(ROLLOUT_ORDER).toEqual([
      'ENFORCE_SESSION_GATED_CHAT',
      'ENFORCE_SESSION_GATED_BILLING',
      'DISABLE_LEGACY_APPOINTMENT_TRIGGERS',
    ]);
  });

  it.each<[string[], string[]]>([
    [[], []],
    [['allow'], []],
    [['chat'], []],
    [['chat', 'billing'], []],
    [['chat', 'billing', 'triggers'], []],
    [['billing'], ['chat']],
    [['triggers'], ['chat', 'billing']],
    [['chat', 'triggers'], ['billing']],
    [['billing', 'triggers'], ['chat']],
    [
      ['triggers', 'allow'],
      ['chat', 'billing'],
    ],
  ])('%j on → skipped %j', (on, skipped) => {
    expect(skippedSteps(flagsOn(...on))).toEqual(skipped.map((s) => SHORT[s]));
  });
});
