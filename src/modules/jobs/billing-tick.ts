/**
 * `billing-tick`: charges the completed units of running sessions and ends sessions whose
 * patient has run out of credit. Runs every BILLING_TICK_SECONDS (default 30 s) so each unit is
 * charged within a minute of its end; any number of workers may run it at once.
 */
import type { JobDefinition } from './scheduler.js';
import { runBillingTick } from '../billing/session-billing.js';

export const billingTickJob: JobDefinition = {
  name: 'billing-tick',
  intervalSeconds: (ctx) => ctx.config.billingTickSeconds,
  async run(ctx, { signal }) {
    const r = await runBillingTick(ctx, { signal });
    return {
      selected: r.selected,
      created: r.units_charged,
      skipped: r.skipped,
      failed: r.failed,
      details: { sessions_charged: r.charged_sessions, units_charged: r.units_charged, sessions_ended_no_credit: r.ended_no_credit },
    };
  },
};
