/**
 * Users can be deactivated (`POST /api/v2/admin/users/{id}/deactivate`): their records stay,
 * their tokens stop working and their sockets are closed. `deactivated_at` is null for an active
 * user.
 *
 * `rate_limit_hits` holds the request counters of `@fastify/rate-limit` (src/plugins/rate-limit.ts)
 * so that a limit holds across API processes: one row per (route or group, caller) window.
 * Unlogged on PostgreSQL — counters need no crash safety and skip the WAL.
 */
export const name = '20261129T2100_user_deactivation';

export const up = /* sql */ `
alter table users add column deactivated_at timestamptz;

create unlogged table rate_limit_hits (
  key        text primary key,
  hits       integer not null,
  expires_at timestamptz not null
);
create index rate_limit_hits_expiry on rate_limit_hits (expires_at);
`;
