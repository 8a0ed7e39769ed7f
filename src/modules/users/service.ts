/** Users, plans and subscriptions: setup and administration. */
import { sql } from 'kysely';
import type { Db, Executor, Plan, Role, Subscription, Trx, User } from '../../db/types.js';
import { conflict, invalid, notFound } from '../../lib/errors.js';
import type { EventBus } from '../../realtime/bus.js';
import { publishUserRevoked } from '../../realtime/revocation.js';

export function isValidTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export interface NewUserInput {
  role: Role;
  name: string;
  country?: string | null;
  timezone?: string;
}

export async function createUser(db: Executor, input: NewUserInput): Promise<User> {
  const name = input.name.trim();
  if (!name) throw invalid('name must not be blank');
  const timezone = input.timezone ?? 'UTC';
  if (!isValidTimezone(timezone)) throw invalid(`timezone "${timezone}" is not an IANA time zone`);
  return db
    .insertInto('users')
    .values({ role: input.role, name, country: input.country?.trim() || null, timezone })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function getUser(db: Executor, id: number): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Users by id (any order; unknown ids are absent), for read models that name the parties. */
export async function usersByIds(db: Executor, ids: readonly number[]): Promise<User[]> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return [];
  return db.selectFrom('users').selectAll().where('id', 'in', unique).execute();
}

export async function listPlans(db: Executor): Promise<Plan[]> {
  return db.selectFrom('plans').selectAll().orderBy('id').execute();
}

export interface NewPlanInput {
  name: string;
  text_credits: number;
  voice_credits: number;
  video_credits: number;
  validity_days: number;
  price_minor?: number;
  currency?: 'USD' | 'MWK';
}

/** Creates a plan, or returns the existing one of that name (seeding is re-runnable). */
export async function upsertPlan(db: Executor, input: NewPlanInput): Promise<Plan> {
  await db
    .insertInto('plans')
    .values(input)
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  return db.selectFrom('plans').selectAll().where('name', '=', input.name).executeTakeFirstOrThrow();
}

export async function findPlan(db: Executor, idOrName: string | number): Promise<Plan | undefined> {
  const q = db.selectFrom('plans').selectAll();
  return typeof idOrName === 'number' || /^\d+$/.test(idOrName)
    ? q.where('id', '=', Number(idOrName)).executeTakeFirst()
    : q.where('name', '=', idOrName).executeTakeFirst();
}

export interface GrantInput {
  user_id: number;
  plan_id: number;
  payment_reference: string;
}

/**
 * Grants a plan to a patient, idempotent by payment reference: the unique constraint decides,
 * a replay returns the original subscription (`created: false`), and a reference reused for a
 * different patient or plan is a 409.
 */
export async function grantSubscription(db: Db, input: GrantInput, now: Date): Promise<{ subscription: Subscription; created: boolean }> {
  const reference = input.payment_reference.trim();
  if (!reference) throw invalid('payment_reference must not be blank');
  const user = await grantee(db, input.user_id);
  const plan = await findPlan(db, input.plan_id);
  if (!plan) throw notFound('Plan', { plan_id: input.plan_id });

  const inserted = await db
    .insertInto('subscriptions')
    .values({
      patient_id: user.id,
      plan_id: plan.id,
      payment_reference: reference,
      text_credits: plan.text_credits,
      voice_credits: plan.voice_credits,
      video_credits: plan.video_credits,
      text_remaining: plan.text_credits,
      voice_remaining: plan.voice_credits,
      video_remaining: plan.video_credits,
      starts_at: now,
      expires_at: sql<Date>`${now}::timestamptz + make_interval(days => ${plan.validity_days})`,
    })
    .onConflict((oc) => oc.column('payment_reference').doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return { subscription: inserted, created: true };

  const existing = await db.selectFrom('subscriptions').selectAll().where('payment_reference', '=', reference).executeTakeFirstOrThrow();
  assertSameGrant(existing, user.id, plan.id);
  return { subscription: existing, created: false };
}

/** Who may hold a subscription: an existing patient. */
async function grantee(db: Executor, userId: number): Promise<User> {
  const user = await getUser(db, userId);
  if (!user) throw notFound('User', { user_id: userId });
  if (user.role !== 'patient') throw invalid('Subscriptions are granted to patients', { user_id: userId });
  return user;
}

/** A payment reference names one grant: replaying it for another patient or plan is a 409. */
function assertSameGrant(existing: Subscription, patientId: number, planId: number): void {
  if (existing.patient_id !== patientId || existing.plan_id !== planId) {
    throw conflict('payment_reference was already used for another grant', { payment_reference: existing.payment_reference });
  }
}

/**
 * Users brought over from the existing backend keep their ids, so the tokens its login issues
 * (`sub` = that id) name the same person here. Inserts the user with its id, or updates role,
 * name, country and timezone when one of them changed; `unchanged` when nothing did (an import
 * run twice writes nothing). Moves the id sequence past the id, so users created here later get
 * fresh ids.
 */
export async function upsertUserKeepingId(
  trx: Trx,
  input: NewUserInput & { id: number },
): Promise<{ user: User; outcome: 'created' | 'updated' | 'unchanged' }> {
  const name = input.name.trim();
  if (!name) throw invalid('name must not be blank');
  const timezone = input.timezone ?? 'UTC';
  if (!isValidTimezone(timezone)) throw invalid(`timezone "${timezone}" is not an IANA time zone`);
  const country = input.country?.trim() || null;
  const written = await sql<User & { inserted: boolean }>`
    insert into users (id, role, name, country, timezone) overriding system value
    values (${input.id}, ${input.role}, ${name}, ${country}, ${timezone})
    on conflict (id) do update
       set role = excluded.role, name = excluded.name, country = excluded.country, timezone = excluded.timezone
     where (users.role, users.name, users.country, users.timezone)
           is distinct from (excluded.role, excluded.name, excluded.country, excluded.timezone)
    returning *, (xmax = 0) as inserted`.execute(trx);
  const row = written.rows[0];
  if (!row) return { user: (await getUser(trx, input.id))!, outcome: 'unchanged' };
  // setval is not transactional: it only ever moves the sequence forward, never behind a value
  // another transaction may already hold.
  await sql`
    select setval(s.seq, greatest(${input.id}::bigint, coalesce(pg_sequence_last_value(s.seq), 1)))
      from (select pg_get_serial_sequence('users', 'id')::regclass as seq) s`.execute(trx);
  const { inserted, ...user } = row;
  return { user: { ...user, id: Number(user.id) }, outcome: inserted ? 'created' : 'updated' };
}

export interface ImportedSubscriptionInput {
  user_id: number;
  plan_id: number;
  payment_reference: string;
  remaining: { text: number; voice: number; video: number };
  starts_at: Date;
  expires_at: Date;
}

/**
 * A subscription brought over from the existing backend with the credits it has left. Idempotent
 * by payment reference like `grantSubscription`: a replay changes nothing (credits used here since
 * the first import are not handed back). The credits granted are the credits remaining at export,
 * so the ledger audit (remaining = granted − charged here) holds from the first day.
 */
export async function importSubscription(
  db: Executor,
  input: ImportedSubscriptionInput,
): Promise<{ subscription: Subscription; created: boolean }> {
  const reference = input.payment_reference.trim();
  if (!reference) throw invalid('payment_reference must not be blank');
  const { text, voice, video } = input.remaining;
  for (const [k, v] of Object.entries(input.remaining)) {
    if (!Number.isSafeInteger(v) || v < 0 || v > 1_000_000) throw invalid(`${k}_remaining must be a whole number from 0`);
  }
  if (!(input.expires_at > input.starts_at)) throw invalid('expires_at must be after starts_at', { payment_reference: reference });
  const user = await grantee(db, input.user_id);
  const plan = await findPlan(db, input.plan_id);
  if (!plan) throw notFound('Plan', { plan_id: input.plan_id });
  const inserted = await db
    .insertInto('subscriptions')
    .values({
      patient_id: user.id,
      plan_id: plan.id,
      payment_reference: reference,
      text_credits: text,
      voice_credits: voice,
      video_credits: video,
      text_remaining: text,
      voice_remaining: voice,
      video_remaining: video,
      starts_at: input.starts_at,
      expires_at: input.expires_at,
    })
    .onConflict((oc) => oc.column('payment_reference').doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return { subscription: inserted, created: true };
  const existing = await db.selectFrom('subscriptions').selectAll().where('payment_reference', '=', reference).executeTakeFirstOrThrow();
  assertSameGrant(existing, user.id, plan.id);
  return { subscription: existing, created: false };
}

export async function listSubscriptions(db: Executor, patientId: number): Promise<Subscription[]> {
  return db.selectFrom('subscriptions').selectAll().where('patient_id', '=', patientId).orderBy('expires_at').orderBy('id').execute();
}

/** How many of the user's in-app notifications are unread. */
export async function unreadNotificationCount(db: Executor, userId: number): Promise<number> {
  const row = await db
    .selectFrom('notifications')
    .select(sql<number>`count(*)::int`.as('n'))
    .where('user_id', '=', userId)
    .where('read_at', 'is', null)
    .executeTakeFirstOrThrow();
  return row.n;
}

/** The active (not deactivated) user of an id, as authentication sees it. */
export async function activeUser(
  db: Executor,
  id: number,
): Promise<Pick<User, 'id' | 'role' | 'name' | 'country' | 'timezone'> | undefined> {
  return db
    .selectFrom('users')
    .select(['id', 'role', 'name', 'country', 'timezone'])
    .where('id', '=', id)
    .where('deactivated_at', 'is', null)
    .executeTakeFirst();
}

/**
 * Deactivates a user: their records stay, their tokens stop authenticating (every door checks
 * `deactivated_at`), and every API process closes their sockets (the revocation signal on the
 * bus). Idempotent: deactivating again keeps the first time and signals again.
 */
export async function deactivateUser(db: Db, bus: EventBus, id: number, now: Date, by?: { id: number }): Promise<User> {
  if (by && by.id === id) throw invalid('You cannot deactivate yourself', { user_id: id });
  const user =
    (await db
      .updateTable('users')
      .set({ deactivated_at: now })
      .where('id', '=', id)
      .where('deactivated_at', 'is', null)
      .returningAll()
      .executeTakeFirst()) ?? (await getUser(db, id));
  if (!user) throw notFound('User', { user_id: id });
  await publishUserRevoked(bus, id, 'deactivated');
  return user;
}
