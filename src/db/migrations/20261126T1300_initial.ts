/**
 * The initial schema. Frozen: later changes are new migrations. Invariants live here as
 * constraints — one session per appointment, one live appointment per doctor and time, one live
 * session per patient, one ledger row per charged unit — so that no code path can break them.
 */
export const name = '20261126T1300_initial';

export const up = /* sql */ `
create function set_updated_at() returns trigger language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end $$;

create table users (
  id          bigint generated always as identity primary key,
  role        text not null check (role in ('patient', 'doctor', 'admin')),
  name        text not null check (length(name) between 1 and 200),
  country     text check (length(country) <= 100),
  timezone    text not null default 'UTC' check (length(timezone) <= 64),
  created_at  timestamptz not null default now()
);

create table plans (
  id             bigint generated always as identity primary key,
  name           text not null unique check (length(name) between 1 and 100),
  text_credits   integer not null default 0 check (text_credits >= 0),
  voice_credits  integer not null default 0 check (voice_credits >= 0),
  video_credits  integer not null default 0 check (video_credits >= 0),
  validity_days  integer not null check (validity_days > 0),
  price_minor    bigint not null default 0 check (price_minor >= 0),
  currency       text not null default 'USD' check (currency in ('USD', 'MWK')),
  created_at     timestamptz not null default now()
);

-- A subscription is a patient's credit wallet from one plan purchase. Remaining credits are a
-- cached balance: decremented by conditional updates, never below zero, and recomputable from
-- the ledger (billing:audit proves they agree).
create table subscriptions (
  id                 bigint generated always as identity primary key,
  patient_id         bigint not null references users (id),
  plan_id            bigint not null references plans (id),
  payment_reference  text not null unique check (length(payment_reference) between 1 and 200),
  text_credits       integer not null check (text_credits >= 0),
  voice_credits      integer not null check (voice_credits >= 0),
  video_credits      integer not null check (video_credits >= 0),
  text_remaining     integer not null check (text_remaining between 0 and text_credits),
  voice_remaining    integer not null check (voice_remaining between 0 and voice_credits),
  video_remaining    integer not null check (video_remaining between 0 and video_credits),
  starts_at          timestamptz not null default now(),
  expires_at         timestamptz not null,
  created_at         timestamptz not null default now(),
  check (expires_at > starts_at)
);
create index subscriptions_patient_fifo on subscriptions (patient_id, expires_at, id);

create table appointments (
  id                     bigint generated always as identity primary key,
  patient_id             bigint not null references users (id),
  doctor_id              bigint not null references users (id),
  -- Not CHECK-constrained: legacy imports may carry odd values, which auto-start classifies as
  -- invalid_appointment_state instead of refusing the import. The booking API accepts only
  -- text | audio | voice | video.
  appointment_type       text not null check (length(appointment_type) between 1 and 32),
  scheduled_at           timestamptz not null,
  duration_minutes       integer not null default 30 check (duration_minutes between 5 and 480),
  status                 text not null default 'pending' check (status in
                           ('pending', 'confirmed', 'in_progress', 'completed', 'missed', 'expired', 'cancelled')),
  session_id             bigint unique,
  reason                 text check (length(reason) <= 2000),
  patient_timezone       text,
  conversion_attempts    integer not null default 0 check (conversion_attempts >= 0),
  last_conversion_error  text,
  next_conversion_at     timestamptz,
  -- Legacy flow bookkeeping (appointments started before sessions existed).
  legacy_started_at      timestamptz,
  legacy_patient_active  boolean not null default false,
  legacy_doctor_active   boolean not null default false,
  created_at             timestamptz not null default now(),
  updated_at             timestamptz not null default now(),
  check (patient_id <> doctor_id)
);
-- One live appointment per doctor and time.
create unique index appointments_doctor_slot on appointments (doctor_id, scheduled_at)
  where status in ('pending', 'confirmed', 'in_progress');
-- The auto-start sweep reads only this index: its cost follows the due set, not the history.
create index appointments_due on appointments (scheduled_at)
  where status = 'confirmed' and session_id is null;
create index appointments_patient on appointments (patient_id, scheduled_at desc);
create index appointments_doctor on appointments (doctor_id, scheduled_at desc);
create index appointments_legacy_open on appointments (scheduled_at)
  where status = 'in_progress' and session_id is null;
create trigger appointments_updated_at before update on appointments
  for each row execute function set_updated_at();

create table sessions (
  id                        bigint generated always as identity primary key,
  kind                      text not null check (kind in ('text', 'call')),
  modality                  text not null check (modality in ('text', 'voice', 'video')),
  source                    text not null check (source in ('APPOINTMENT', 'INSTANT')),
  appointment_id            bigint unique references appointments (id),
  patient_id                bigint not null references users (id),
  doctor_id                 bigint not null references users (id),
  status                    text not null,
  created_at                timestamptz not null default now(),
  activated_at              timestamptz,
  connected_at              timestamptz,
  ended_at                  timestamptz,
  end_reason                text,
  patient_first_message_at  timestamptz,
  doctor_response_deadline  timestamptz,
  ringing_since             timestamptz,
  patient_in_call           boolean not null default false,
  doctor_in_call            boolean not null default false,
  credits_at_start          integer,
  units_billed              integer not null default 0 check (units_billed >= 0),
  settled_at                timestamptz,
  updated_at                timestamptz not null default now(),
  check ((kind = 'text') = (modality = 'text')),
  check ((source = 'APPOINTMENT') = (appointment_id is not null)),
  check (
    (kind = 'text' and status in ('waiting_for_doctor', 'active', 'ended', 'expired')) or
    (kind = 'call' and status in ('waiting', 'ringing', 'connected', 'ended', 'missed', 'expired'))
  ),
  check ((status in ('ended', 'expired', 'missed')) = (ended_at is not null)),
  check (patient_id <> doctor_id)
);
-- A patient has at most one live session.
create unique index sessions_one_live_per_patient on sessions (patient_id)
  where status in ('waiting_for_doctor', 'active', 'waiting', 'ringing', 'connected');
create index sessions_doctor_live on sessions (doctor_id)
  where status in ('waiting_for_doctor', 'active', 'waiting', 'ringing', 'connected');
create index sessions_live on sessions (status, created_at)
  where status in ('waiting_for_doctor', 'active', 'waiting', 'ringing', 'connected');
create index sessions_unsettled on sessions (ended_at) where settled_at is null and ended_at is not null;
create trigger sessions_updated_at before update on sessions
  for each row execute function set_updated_at();

alter table appointments add constraint appointments_session_fk
  foreign key (session_id) references sessions (id);

-- Chat. A message belongs to a session; legacy pre-session chat is kept per appointment and
-- gets its session_id when the session starts (carried into the session's history).
create table messages (
  id                   bigint generated always as identity primary key,
  session_id           bigint references sessions (id),
  appointment_id       bigint references appointments (id),
  sender_id            bigint not null references users (id),
  client_message_id    text check (length(client_message_id) between 1 and 100),
  type                 text not null check (type in ('text', 'image', 'voice')),
  body                 text not null check (length(body) <= 1000),
  media_url            text check (length(media_url) <= 2000),
  reply_to_message_id  bigint references messages (id),
  created_at           timestamptz not null default now(),
  check (session_id is not null or appointment_id is not null)
);
create unique index messages_client_id on messages (session_id, sender_id, client_message_id)
  where session_id is not null and client_message_id is not null;
create unique index messages_legacy_client_id on messages (appointment_id, sender_id, client_message_id)
  where session_id is null and client_message_id is not null;
create index messages_session_keyset on messages (session_id, id);
create index messages_appointment on messages (appointment_id, id) where appointment_id is not null;

create table message_reactions (
  message_id  bigint not null references messages (id),
  user_id     bigint not null references users (id),
  emoji       text not null check (length(emoji) between 1 and 32),
  created_at  timestamptz not null default now(),
  primary key (message_id, user_id, emoji)
);

-- Read horizon per participant: the newest message id read. Only moves forward (enforced by
-- the conditional upsert in the chat repository).
create table read_horizons (
  scope_key             text not null,
  user_id               bigint not null references users (id),
  last_read_message_id  bigint not null,
  updated_at            timestamptz not null default now(),
  primary key (scope_key, user_id)
);

-- Billing. A doctor wallet has one currency; money in integer minor units.
create table doctor_wallets (
  doctor_id      bigint primary key references users (id),
  currency       text not null check (currency in ('MWK', 'USD')),
  balance_minor  bigint not null default 0 check (balance_minor >= 0),
  updated_at     timestamptz not null default now()
);

-- One row per charged unit: the patient debit (one credit of the subscription) and the doctor
-- credit are the same row, so neither can exist without the other. Append-only.
create table ledger_entries (
  id                   bigint generated always as identity primary key,
  session_id           bigint references sessions (id),
  appointment_id       bigint references appointments (id),
  unit_no              integer not null check (unit_no >= 1),
  patient_id           bigint not null references users (id),
  doctor_id            bigint not null references users (id),
  subscription_id      bigint not null references subscriptions (id),
  modality             text not null check (modality in ('text', 'voice', 'video')),
  credits              integer not null default 1 check (credits = 1),
  doctor_amount_minor  bigint not null check (doctor_amount_minor >= 0),
  doctor_currency      text not null check (doctor_currency in ('MWK', 'USD')),
  reason               text not null,
  created_at           timestamptz not null default now(),
  check ((session_id is null) <> (appointment_id is null))
);
create unique index ledger_session_unit on ledger_entries (session_id, unit_no) where session_id is not null;
create unique index ledger_appointment_unit on ledger_entries (appointment_id, unit_no) where appointment_id is not null;
create index ledger_doctor on ledger_entries (doctor_id, id);
create index ledger_subscription on ledger_entries (subscription_id);

create function ledger_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'ledger_entries is append-only';
end $$;
create trigger ledger_no_update before update or delete on ledger_entries
  for each row execute function ledger_append_only();

-- Legacy appointment billing operations (end-session / process-payment once per appointment).
create table legacy_billing_ops (
  appointment_id  bigint not null references appointments (id),
  operation       text not null check (operation in ('end-session', 'process-payment')),
  units           integer not null check (units >= 0),
  created_at      timestamptz not null default now(),
  primary key (appointment_id, operation)
);

-- Idempotency records for requests that carry an Idempotency-Key.
create table idempotency_keys (
  user_id          bigint not null,
  scope            text not null,
  key              text not null check (length(key) between 1 and 200),
  request_hash     text not null,
  response_status  integer not null,
  response_body    jsonb not null,
  created_at       timestamptz not null default now(),
  primary key (user_id, scope, key)
);

-- Operations records: every periodic run, every conversion, every guard decision.
create table job_runs (
  id           bigint generated always as identity primary key,
  run_id       uuid not null unique,
  job          text not null,
  started_at   timestamptz not null default now(),
  finished_at  timestamptz,
  duration_ms  integer,
  status       text not null default 'running' check (status in ('running', 'succeeded', 'failed', 'skipped')),
  selected     integer not null default 0,
  created      integer not null default 0,
  skipped      integer not null default 0,
  failed       integer not null default 0,
  details      jsonb not null default '{}'::jsonb,
  host         text,
  pid          integer
);
create index job_runs_job_time on job_runs (job, started_at desc);

create table appointment_conversions (
  id              bigint generated always as identity primary key,
  appointment_id  bigint not null references appointments (id),
  source          text not null,
  result          text not null check (result in ('created', 'skipped', 'failed')),
  session_id      bigint,
  failure_reason  text,
  job_run_id      uuid,
  created_at      timestamptz not null default now()
);
create index appointment_conversions_time on appointment_conversions (created_at);
create index appointment_conversions_appointment on appointment_conversions (appointment_id);

create table guard_events (
  id              bigint generated always as identity primary key,
  guard           text not null check (guard in ('chat', 'billing', 'legacy_trigger')),
  operation       text not null,
  outcome         text not null check (outcome in ('blocked', 'would_block', 'allowed_legacy', 'not_ready')),
  enforced        boolean not null,
  appointment_id  bigint,
  session_id      bigint,
  user_id         bigint,
  created_at      timestamptz not null default now()
);
create index guard_events_time on guard_events (guard, created_at);

-- Notifications: enqueued in the writer's transaction with a unique key, delivered after commit.
create table notification_outbox (
  id            bigint generated always as identity primary key,
  dedupe_key    text not null unique,
  recipient_id  bigint not null references users (id),
  kind          text not null,
  payload       jsonb not null,
  created_at    timestamptz not null default now(),
  delivered_at  timestamptz,
  attempts      integer not null default 0
);
create index notification_outbox_pending on notification_outbox (id) where delivered_at is null;

create table notifications (
  id          bigint generated always as identity primary key,
  outbox_id   bigint not null unique references notification_outbox (id),
  user_id     bigint not null references users (id),
  kind        text not null,
  payload     jsonb not null,
  created_at  timestamptz not null default now(),
  read_at     timestamptz
);
create index notifications_user on notifications (user_id, id desc);
`;
