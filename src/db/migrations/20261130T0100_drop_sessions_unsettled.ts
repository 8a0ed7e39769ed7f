/**
 * Drops `sessions_unsettled`: no query reads it. A session is settled in the transaction that
 * ends it, so no ended session ever waits for a sweep to find it unsettled.
 */
export const name = '20261130T0100_drop_sessions_unsettled';

export const up = /* sql */ `
drop index if exists sessions_unsettled;
`;
