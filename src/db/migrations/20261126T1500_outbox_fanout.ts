/**
 * One outbox row may notify several users: `also_notify` lists recipients beyond `recipient_id`,
 * and a delivered notification is unique per (outbox row, user) instead of per outbox row. The
 * session writer enqueues ONE "session started" row per appointment (patient + doctor) with the
 * key `session_started:{appointment}:{session}` — half the outbox writes of one row per
 * recipient, still delivered exactly once per (appointment, session, recipient).
 */
export const name = '20261126T1500_outbox_fanout';

export const up = /* sql */ `
alter table notification_outbox add column also_notify bigint[] not null default '{}';
alter table notifications drop constraint notifications_outbox_id_key;
create unique index notifications_outbox_user on notifications (outbox_id, user_id);
`;
