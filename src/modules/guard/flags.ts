/**
 * The flags as the guard reads them on every legacy request. Evaluating the four flags through
 * OpenFeature costs ~60 µs of CPU (measured), as much as the rest of a guarded chat request's
 * guard work; their values only change through `FlagService.set` (boot, SIGHUP reload, tests),
 * which notifies `onChange`. So an evaluation is kept until the next change notification: every
 * request still sees the flags in force at that moment, for the price of a map look-up.
 *
 * A provider that changes values on its own (flagd, Unleash) must report its changes through
 * `FlagService.onChange` — as the environment provider does — for this to stay exact.
 */
import type { FlagSet } from '../../config/flag-values.js';
import type { FlagService } from '../../config/flags.js';

interface Cached {
  generation: number;
  value: Promise<FlagSet> | null;
}

const caches = new WeakMap<FlagService, Cached>();

export function currentGuardFlags(flags: FlagService): Promise<FlagSet> {
  let c = caches.get(flags);
  if (!c) {
    const fresh: Cached = { generation: 0, value: null };
    flags.onChange(() => {
      fresh.generation += 1;
      fresh.value = null;
    });
    caches.set(flags, (c = fresh));
  }
  if (c.value) return c.value;
  const generation = c.generation;
  const cache = c;
  const value = flags.current();
  cache.value = value;
  // A change that lands while this evaluation runs invalidates it (the next caller re-evaluates).
  value.then(
    () => {
      if (cache.generation !== generation && cache.value === value) cache.value = null;
    },
    () => {
      if (cache.value === value) cache.value = null;
    },
  );
  return value;
}
