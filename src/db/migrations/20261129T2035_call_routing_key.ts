/**
 * The original mobile app names an instant call by a routing key it makes up itself,
 * `direct_session_<ms>`, and sends it on every call request (start, answer, decline, end) and on
 * its call socket. The key is kept on the session the start created, so a retried start with the
 * same key returns the same session (idempotent per key, enforced by the unique index) and the
 * other requests find the session by it. Keys come from one patient's clock, so they are unique
 * per patient, not globally; the index's leading `routing_key` also serves the doctor's look-up.
 */
export const name = '20261129T2035_call_routing_key';

export const up = /* sql */ `
alter table sessions add column routing_key text
  check (routing_key is null or (kind = 'call' and source = 'INSTANT' and length(routing_key) between 1 and 64));
create unique index sessions_routing_key on sessions (routing_key, patient_id) where routing_key is not null;
`;
