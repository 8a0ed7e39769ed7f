/**
 * Over time: sessions end without a client, busy patients wait,
 * appointments settle, record tables have a retention.
 *
 * - `sessions.allowed_minutes`: the time the session may be billed for, fixed when it is created
 *   (the booking's duration, or INSTANT_SESSION_MAX_MINUTES); null for sessions created before
 *   this migration (no cap). Billing never charges more units than this time covers.
 * - `sessions.patient_away_since` / `doctor_away_since`: when the participant's last WebSocket
 *   connection to a call went away (closed or missed heartbeats); null while present or never
 *   seen. A connected call with both away for CALL_DISCONNECT_GRACE_SECONDS ends `disconnected`.
 * - `appointment_conversions.result` gains `deferred` (the patient was in another live session:
 *   no attempt, not a failure), `missed` (a confirmed appointment left unconverted past
 *   STALE_APPOINTMENT_DAYS) and `expired` (a pending appointment whose time passed).
 * - `notifications.outbox_id` stops being a foreign key: delivered outbox rows are pruned after
 *   RECORD_RETENTION_DAYS while the delivered notifications (the user's inbox) stay.
 * - Indexes for the retention job's time-ordered deletes.
 */
export const name = '20261129T2040_over_time';

export const up = /* sql */ `
alter table sessions add column allowed_minutes integer check (allowed_minutes is null or allowed_minutes > 0);
alter table sessions add column patient_away_since timestamptz;
alter table sessions add column doctor_away_since timestamptz;

alter table appointment_conversions drop constraint appointment_conversions_result_check;
alter table appointment_conversions add constraint appointment_conversions_result_check
  check (result in ('created', 'skipped', 'failed', 'deferred', 'missed', 'expired'));

alter table notifications drop constraint notifications_outbox_id_fkey;

create index notification_outbox_delivered on notification_outbox (delivered_at) where delivered_at is not null;
create index idempotency_keys_time on idempotency_keys (created_at);
create index job_runs_time on job_runs (started_at);
-- Pending appointments past their time (the settle job's sweep).
create index appointments_pending on appointments (scheduled_at) where status = 'pending';
`;
