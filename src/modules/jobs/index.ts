/** The periodic jobs the worker runs. One file per job; add it to this list. */
import { billingTickJob } from './billing-tick.js';
import { activateBookedJob } from './legacy-activate-booked.js';
import { autoStartJob } from './auto-start.js';
import { appointmentsSettleJob } from './appointments-settle.js';
import { dueGaugeJob } from './due-gauge.js';
import { jobRunsRetentionJob } from './job-runs-retention.js';
import { notificationDeliveryJob } from './notification-delivery.js';
import { processSessionsJob } from './legacy-process-sessions.js';
import type { JobDefinition } from './scheduler.js';
import { sessionExpiryJob } from './session-expiry.js';
import { sessionLimitsJob } from './session-limits.js';

export const JOBS: JobDefinition[] = [
  autoStartJob,
  sessionExpiryJob,
  notificationDeliveryJob,
  dueGaugeJob,
  activateBookedJob,
  processSessionsJob,
  jobRunsRetentionJob,
  billingTickJob,
  sessionLimitsJob,
  appointmentsSettleJob,
];
