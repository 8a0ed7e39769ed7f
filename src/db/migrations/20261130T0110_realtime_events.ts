/**
 * Events of the cross-process bus (`src/realtime/pg-bus.ts`): a publisher inserts them and
 * NOTIFYs their id range; listeners in other processes read them. Unlogged: nothing here must
 * outlive a crash (listeners resync after one), and the table is written at the rate of chat
 * sends. Rows are deleted after about a minute.
 */
export const name = '20261130T0110_realtime_events';

export const up = /* sql */ `
create unlogged table realtime_events (
  id     bigint generated always as identity primary key,
  origin text not null,
  body   text not null
);
`;
