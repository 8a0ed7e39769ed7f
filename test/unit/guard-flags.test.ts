import { describe, expect, it } from 'vitest';
import { FlagService } from '../../src/config/flags.js';
import { currentGuardFlags } from '../../src/modules/guard/flags.js';

describe('currentGuardFlags', () => {
  it('evaluates once through OpenFeature and again after every change', async () => {
    const flags = new FlagService(() => ({ ENFORCE_SESSION_GATED_CHAT: 'false' }));
    let evaluations = 0;
    const current = flags.current.bind(flags);
    flags.current = () => {
      evaluations++;
      return current();
    };
    expect((await currentGuardFlags(flags)).ENFORCE_SESSION_GATED_CHAT).toBe(false);
    await currentGuardFlags(flags);
    await Promise.all([currentGuardFlags(flags), currentGuardFlags(flags)]);
    expect(evaluations).toBe(1);
    flags.set({ ENFORCE_SESSION_GATED_CHAT: true });
    expect((await currentGuardFlags(flags)).ENFORCE_SESSION_GATED_CHAT).toBe(true);
    expect(evaluations).toBe(2);
    flags.set({ ENFORCE_SESSION_GATED_CHAT: true }); // no change, no re-evaluation
    await currentGuardFlags(flags);
    expect(evaluations).toBe(2);
  });

  it('a change during an evaluation is seen by the next caller', async () => {
    const flags = new FlagService(() => ({}));
    const pending = currentGuardFlags(flags);
    flags.set({ ALLOW_LEGACY_APPOINTMENT_CHAT: true });
    await pending;
    expect((await currentGuardFlags(flags)).ALLOW_LEGACY_APPOINTMENT_CHAT).toBe(true);
  });
});
