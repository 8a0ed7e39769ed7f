/**
 * Chat media (images and voice notes) uploaded by the participants of a consultation, stored in
 * the database itself: durable with everything else (backups, PITR), readable by every API
 * process, and the same on PGlite. Medical records: never pruned.
 *
 * `token` is the capability in the media URL (256 random bits, base64url); the row names the
 * conversation it belongs to (a session, or an appointment before its session exists).
 */
export const name = '20261129T2110_uploads';

export const up = /* sql */ `
create table media_uploads (
  id             bigint generated always as identity primary key,
  token          text not null unique check (length(token) = 43),
  uploader_id    bigint not null references users (id),
  session_id     bigint references sessions (id),
  appointment_id bigint references appointments (id),
  kind           text not null check (kind in ('image', 'voice')),
  content_type   text not null,
  extension      text not null,
  original_name  text,
  size_bytes     integer not null check (size_bytes > 0),
  bytes          bytea not null,
  created_at     timestamptz not null default now(),
  check (session_id is not null or appointment_id is not null),
  check (octet_length(bytes) = size_bytes)
);
create index media_uploads_session on media_uploads (session_id) where session_id is not null;
create index media_uploads_appointment on media_uploads (appointment_id) where appointment_id is not null;
`;
