/** Every migration, in order. Add a file and one line here; never edit an applied migration. */
import * as initial from './20261126T1300_initial.js';
import * as outboxFanout from './20261126T1500_outbox_fanout.js';
import * as legacySendEvidence from './20261126T2340_legacy_send_evidence.js';
import * as callRoutingKey from './20261129T2035_call_routing_key.js';
import * as uploads from './20261129T2110_uploads.js';
import * as overTime from './20261129T2040_over_time.js';
import * as userDeactivation from './20261129T2100_user_deactivation.js';
import * as sessionsEndedIndex from './20261129T2300_sessions_ended_index.js';
import * as dropSessionsUnsettled from './20261130T0100_drop_sessions_unsettled.js';
import * as realtimeEvents from './20261130T0110_realtime_events.js';

export interface Migration {
  name: string;
  up: string;
}

export const migrations: Migration[] = [
  initial,
  outboxFanout,
  legacySendEvidence,
  callRoutingKey,
  overTime,
  userDeactivation,
  uploads,
  sessionsEndedIndex,
  dropSessionsUnsettled,
  realtimeEvents,
];
