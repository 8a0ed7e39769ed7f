/**
 * Table types for Kysely. Terminology:
 * - appointment: a booking of a patient with a doctor at `scheduled_at`.
 * - session: the live consultation an appointment becomes (or an instant one); `kind` text|call.
 * - session context: the string that names a session (`text_session:12`, `call_session:7`).
 * - unit: 10 minutes of consultation; one ledger row per charged unit.
 * - due: confirmed, no session, `scheduled_at <= now()` by the database clock.
 */
import type { ColumnType, Generated, Insertable, Kysely, Selectable, Transaction, Updateable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
type UpdatedAt = ColumnType<Date, Date | string | undefined, Date | string>;
type Json = ColumnType<unknown, string, string>;

export type Role = 'patient' | 'doctor' | 'admin';
export type AppointmentStatus = 'pending' | 'confirmed' | 'in_progress' | 'completed' | 'missed' | 'expired' | 'cancelled';
export type SessionKindCol = 'text' | 'call';
export type Modality = 'text' | 'voice' | 'video';
export type SessionSource = 'APPOINTMENT' | 'INSTANT';
export type TextSessionStatus = 'waiting_for_doctor' | 'active' | 'ended' | 'expired';
export type CallSessionStatus = 'waiting' | 'ringing' | 'connected' | 'ended' | 'missed' | 'expired';
export type SessionStatus = TextSessionStatus | CallSessionStatus;
export const LIVE_SESSION_STATUSES = ['waiting_for_doctor', 'active', 'waiting', 'ringing', 'connected'] as const;
export const LIVE_APPOINTMENT_STATUSES = ['pending', 'confirmed', 'in_progress'] as const;

export interface UsersTable {
  id: Generated<number>;
  role: Role;
  name: string;
  country: string | null;
  timezone: ColumnType<string, string | undefined, string>;
  created_at: CreatedAt;
  /** Set when an admin deactivates the user: tokens and sockets stop working; records stay. */
  deactivated_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export interface PlansTable {
  id: Generated<number>;
  name: string;
  text_credits: ColumnType<number, number | undefined, number>;
  voice_credits: ColumnType<number, number | undefined, number>;
  video_credits: ColumnType<number, number | undefined, number>;
  validity_days: number;
  price_minor: ColumnType<number, number | undefined, number>;
  currency: ColumnType<string, string | undefined, string>;
  created_at: CreatedAt;
}

export interface SubscriptionsTable {
  id: Generated<number>;
  patient_id: number;
  plan_id: number;
  payment_reference: string;
  text_credits: number;
  voice_credits: number;
  video_credits: number;
  text_remaining: number;
  voice_remaining: number;
  video_remaining: number;
  starts_at: ColumnType<Date, Date | string | undefined, Date | string>;
  expires_at: Timestamp;
  created_at: CreatedAt;
}

export interface AppointmentsTable {
  id: Generated<number>;
  patient_id: number;
  doctor_id: number;
  appointment_type: string;
  scheduled_at: Timestamp;
  duration_minutes: ColumnType<number, number | undefined, number>;
  status: ColumnType<AppointmentStatus, AppointmentStatus | undefined, AppointmentStatus>;
  session_id: number | null;
  reason: string | null;
  patient_timezone: string | null;
  conversion_attempts: ColumnType<number, number | undefined, number>;
  last_conversion_error: string | null;
  next_conversion_at: Timestamp | null;
  legacy_started_at: Timestamp | null;
  legacy_patient_active: ColumnType<boolean, boolean | undefined, boolean>;
  legacy_doctor_active: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface SessionsTable {
  id: Generated<number>;
  kind: SessionKindCol;
  modality: Modality;
  source: SessionSource;
  appointment_id: number | null;
  patient_id: number;
  doctor_id: number;
  status: SessionStatus;
  created_at: CreatedAt;
  activated_at: Timestamp | null;
  connected_at: Timestamp | null;
  ended_at: Timestamp | null;
  end_reason: string | null;
  patient_first_message_at: Timestamp | null;
  doctor_response_deadline: Timestamp | null;
  ringing_since: Timestamp | null;
  patient_in_call: ColumnType<boolean, boolean | undefined, boolean>;
  doctor_in_call: ColumnType<boolean, boolean | undefined, boolean>;
  credits_at_start: number | null;
  units_billed: ColumnType<number, number | undefined, number>;
  settled_at: Timestamp | null;
  updated_at: UpdatedAt;
  /** The original app's `direct_session_<ms>` key of an instant call (unique per patient). */
  routing_key: string | null;
  /** The time the session may be billed for (booking duration or the instant maximum); null: no cap (older rows). */
  allowed_minutes: number | null;
  /** When the participant's last WebSocket connection to the call went away; null while present or never seen. */
  patient_away_since: Timestamp | null;
  doctor_away_since: Timestamp | null;
}

export interface MessagesTable {
  id: Generated<number>;
  session_id: number | null;
  appointment_id: number | null;
  sender_id: number;
  client_message_id: string | null;
  type: 'text' | 'image' | 'voice';
  body: string;
  media_url: string | null;
  reply_to_message_id: number | null;
  /** Set on a message sent through a legacy chat route and served by the session (a would-block guard event). */
  legacy_operation: 'sendMessage' | 'replyToMessage' | null;
  created_at: CreatedAt;
}

export interface MessageReactionsTable {
  message_id: number;
  user_id: number;
  emoji: string;
  created_at: CreatedAt;
}

export interface ReadHorizonsTable {
  scope_key: string;
  user_id: number;
  last_read_message_id: number;
  updated_at: UpdatedAt;
}

export interface DoctorWalletsTable {
  doctor_id: number;
  currency: 'MWK' | 'USD';
  balance_minor: ColumnType<number, number | undefined, number>;
  updated_at: UpdatedAt;
}

export interface LedgerEntriesTable {
  id: Generated<number>;
  session_id: number | null;
  appointment_id: number | null;
  unit_no: number;
  patient_id: number;
  doctor_id: number;
  subscription_id: number;
  modality: Modality;
  credits: ColumnType<number, number | undefined, never>;
  doctor_amount_minor: number;
  doctor_currency: 'MWK' | 'USD';
  reason: string;
  created_at: CreatedAt;
}

export interface LegacyBillingOpsTable {
  appointment_id: number;
  operation: 'end-session' | 'process-payment';
  units: number;
  created_at: CreatedAt;
}

export interface IdempotencyKeysTable {
  user_id: number;
  scope: string;
  key: string;
  request_hash: string;
  response_status: number;
  response_body: Json;
  created_at: CreatedAt;
}

export interface JobRunsTable {
  id: Generated<number>;
  run_id: string;
  job: string;
  started_at: CreatedAt;
  finished_at: Timestamp | null;
  duration_ms: number | null;
  status: ColumnType<'running' | 'succeeded' | 'failed' | 'skipped', 'running' | 'succeeded' | 'failed' | 'skipped' | undefined>;
  selected: ColumnType<number, number | undefined, number>;
  created: ColumnType<number, number | undefined, number>;
  skipped: ColumnType<number, number | undefined, number>;
  failed: ColumnType<number, number | undefined, number>;
  details: ColumnType<unknown, string | undefined, string>;
  host: string | null;
  pid: number | null;
}

export type ConversionResult = 'created' | 'skipped' | 'failed' | 'deferred' | 'missed' | 'expired';

export interface AppointmentConversionsTable {
  id: Generated<number>;
  appointment_id: number;
  source: string;
  result: ConversionResult;
  session_id: number | null;
  failure_reason: string | null;
  job_run_id: string | null;
  created_at: CreatedAt;
}

export interface GuardEventsTable {
  id: Generated<number>;
  guard: 'chat' | 'billing' | 'legacy_trigger';
  operation: string;
  outcome: 'blocked' | 'would_block' | 'allowed_legacy' | 'not_ready';
  enforced: boolean;
  appointment_id: number | null;
  session_id: number | null;
  user_id: number | null;
  created_at: CreatedAt;
}

export interface MediaUploadsTable {
  id: Generated<number>;
  token: string;
  uploader_id: number;
  session_id: number | null;
  appointment_id: number | null;
  kind: 'image' | 'voice';
  content_type: string;
  extension: string;
  original_name: string | null;
  size_bytes: number;
  bytes: Buffer;
  created_at: CreatedAt;
}

/** The view of every guard decision: `guard_events` plus the would-block legacy sends marked on their messages. */
export type GuardEventLogView = Selectable<GuardEventsTable>;

export interface NotificationOutboxTable {
  id: Generated<number>;
  dedupe_key: string;
  recipient_id: number;
  /** Further recipients of the same row (a "session started" row notifies patient and doctor). */
  also_notify: ColumnType<number[], number[] | undefined, number[]>;
  kind: string;
  payload: Json;
  created_at: CreatedAt;
  delivered_at: Timestamp | null;
  attempts: ColumnType<number, number | undefined, number>;
}

export interface NotificationsTable {
  id: Generated<number>;
  outbox_id: number;
  user_id: number;
  kind: string;
  payload: Json;
  created_at: CreatedAt;
  read_at: Timestamp | null;
}

export interface DB {
  users: UsersTable;
  plans: PlansTable;
  subscriptions: SubscriptionsTable;
  appointments: AppointmentsTable;
  sessions: SessionsTable;
  messages: MessagesTable;
  message_reactions: MessageReactionsTable;
  read_horizons: ReadHorizonsTable;
  doctor_wallets: DoctorWalletsTable;
  ledger_entries: LedgerEntriesTable;
  legacy_billing_ops: LegacyBillingOpsTable;
  idempotency_keys: IdempotencyKeysTable;
  job_runs: JobRunsTable;
  appointment_conversions: AppointmentConversionsTable;
  guard_events: GuardEventsTable;
  guard_event_log: GuardEventLogView;
  notification_outbox: NotificationOutboxTable;
  notifications: NotificationsTable;
  media_uploads: MediaUploadsTable;
  rate_limit_hits: RateLimitHitsTable;
}

/** Request counters of the rate limiter (src/plugins/rate-limit.ts), shared by API processes. */
export interface RateLimitHitsTable {
  key: string;
  hits: number;
  expires_at: Date;
}

/** The database or a transaction: what repository functions take. */
export type Db = Kysely<DB>;
/** A transaction: what functions that take row locks require. */
export type Trx = Transaction<DB>;
export type Executor = Db | Trx;

export type User = Selectable<UsersTable>;
export type Plan = Selectable<PlansTable>;
export type Subscription = Selectable<SubscriptionsTable>;
export type Appointment = Selectable<AppointmentsTable>;
export type NewAppointment = Insertable<AppointmentsTable>;
export type AppointmentUpdate = Updateable<AppointmentsTable>;
export type Session = Selectable<SessionsTable>;
/** A message as the chat reads it; `legacy_operation` is guard bookkeeping, read only through `guard_event_log`. */
export type Message = Omit<Selectable<MessagesTable>, 'legacy_operation'>;
export type LedgerEntry = Selectable<LedgerEntriesTable>;
