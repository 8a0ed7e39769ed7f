/**
 * `sessions:end-limits`: ends running sessions nobody ended — idle text chats
 * (`inactive`), calls both participants left (`disconnected`), sessions past their time limit
 * (`time_limit`) — and sends the "ends in 5 minutes" notice before a time limit. Every 15 s, so a
 * limit is applied within 15 s of being reached (billing never runs past it: the session is
 * ended at the limit's instant, and the billing tick applies the same limits before it charges).
 * Any number of workers may run it at once (see sessions/limits.ts).
 */
import { endSessionsPastLimits } from '../sessions/limits.js';
import type { JobDefinition } from './scheduler.js';

export const SESSION_LIMITS_JOB = 'sessions:end-limits';

export const sessionLimitsJob: JobDefinition = {
  name: SESSION_LIMITS_JOB,
  intervalSeconds: () => 15,
  recordIdleRuns: false,
  async run(ctx, { signal }) {
    const r = await endSessionsPastLimits(ctx, { signal });
    return {
      selected: r.selected,
      created: r.ended,
      skipped: r.locked,
      failed: r.failed,
      details: { ended: r.ended, noticed: r.noticed, by_reason: r.by_reason },
    };
  },
};
