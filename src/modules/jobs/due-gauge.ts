/**
 * Refreshes the `appointments_due_count` gauge from the database (a count on the
 * `appointments_due` partial index: its cost follows the backlog, not the history), so every
 * worker exports the same number whoever converts the appointments.
 */
import { countDue } from './auto-start.js';
import type { JobDefinition } from './scheduler.js';

export const DUE_GAUGE_JOB = 'metrics:appointments-due';

export const dueGaugeJob: JobDefinition = {
  name: DUE_GAUGE_JOB,
  intervalSeconds: () => 15,
  recordIdleRuns: false,
  async run(ctx) {
    const due = await countDue(ctx.db, { lateness: ctx.config.autoStartMaxLatenessMinutes, maxAttempts: ctx.config.autoStartMaxAttempts });
    ctx.metrics.conversions.due.set(due);
    return { details: { due } };
  },
};
