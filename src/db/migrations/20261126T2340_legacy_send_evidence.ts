/**
 * A legacy send served by the session's chat (flags off, appointment with a session: the
 * would-block case of the chat guard) is recorded on the message it wrote — `legacy_operation` names
 * the legacy operation — instead of in a second row of `guard_events`. The send's one statement
 * then writes one row, not two: the guard event costs the database about a third of what its own
 * insert did (docs/benchmarks.md), and the event exists exactly when the message does.
 *
 * `guard_event_log` is every guard decision: the `guard_events` rows plus one would-block chat
 * event per message so marked (its appointment through the session). `rollout:status` and
 * `appointments:monitor-sessions` read the view; the partial index serves its time windows.
 */
export const name = '20261126T2340_legacy_send_evidence';

export const up = /* sql */ `
alter table messages add column legacy_operation text
  check (legacy_operation is null or (legacy_operation in ('sendMessage', 'replyToMessage') and session_id is not null));
create index messages_legacy_sends on messages (created_at) where legacy_operation is not null;

create view guard_event_log as
  select id, guard, operation, outcome, enforced, appointment_id, session_id, user_id, created_at
    from guard_events
  union all
  select m.id, 'chat', m.legacy_operation, 'would_block', false, s.appointment_id, m.session_id, m.sender_id, m.created_at
    from messages m
    join sessions s on s.id = m.session_id
   where m.legacy_operation is not null;
`;
