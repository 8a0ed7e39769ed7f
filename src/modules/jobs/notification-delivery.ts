/**
 * Notification delivery retry: the writer delivers "session started" notifications right after
 * its commit, and auto-start at the end of each run; this job delivers whatever is still in the
 * outbox (a process that died between commit and delivery, a delivery that failed). Exactly
 * once per outbox row however many workers run it (SKIP LOCKED + unique `outbox_id`).
 */
import { deliverPendingNotifications } from '../notifications/outbox.js';
import type { JobDefinition } from './scheduler.js';

export const NOTIFICATION_DELIVERY_JOB = 'notifications:deliver';
const BATCH = 500;

export const notificationDeliveryJob: JobDefinition = {
  name: NOTIFICATION_DELIVERY_JOB,
  intervalSeconds: () => 5,
  recordIdleRuns: false,
  async run(ctx, { signal }) {
    let delivered = 0;
    for (let i = 0; i < 20 && !signal.aborted; i++) {
      const n = await deliverPendingNotifications(ctx, BATCH);
      delivered += n;
      if (n < BATCH) break;
    }
    return { selected: delivered, created: delivered };
  },
};
