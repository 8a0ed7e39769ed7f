/** Users, plans and subscriptions: setup and administration. */
import { sql } from 'kysely';
import type { Db, Executor, Plan, Role, Subscription, User } from '../../db/types.js';
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
  const user = await getUser(db, input.user_id);
  if (!user) throw notFound('User', { user_id: input.user_id });
  if (user.role !== 'patient') throw invalid('Subscriptions are granted to patients', { user_id: input.user_id });
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
  if (existing.patient_id !== user.id || existing.plan_id !== plan.id) {
    throw conflict('payment_reference was already used for another grant', { payment_reference: reference });
  }
  return { subscription: existing, created: false };
}

export async function listSubscriptions(db: Executor, patientId: number): Promise<Subscription[]> {
  return db.selectFrom('subscriptions').selectAll().where('patient_id', '=', patientId).orderBy('expires_at').orderBy('id').execute();
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
