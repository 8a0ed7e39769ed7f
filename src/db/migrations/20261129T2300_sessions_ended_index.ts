/**
 * Sessions by the time they ended: the monitor and /ops count the sessions ended in the last
 * 24 hours by `end_reason` every refresh, on a table that is never pruned (medical records).
 */
export const name = '20261129T2300_sessions_ended_index';

export const up = /* sql */ `
create index sessions_ended on sessions (ended_at) where ended_at is not null;
`;
