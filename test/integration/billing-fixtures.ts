/**
 * Billing test fixtures: sessions whose billable clock started in the past (instead of
 * sleeping), credit grants with chosen expiry, and ledger/subscription look-ups.
 */
import { sql } from 'kysely';
import { expect } from 'vitest';
import type { Modality, Session, User } from '../../src/db/types.js';
import { grantSubscription, upsertPlan } from '../../src/modules/users/service.js';
import type { TestHarness } from '../helpers/app.js';

let seq = 0;

/** Grants a subscription with the given credits, valid `days` from now; returns its id. */
export async function grant(t: TestHarness, patient: User, credits: Partial<Record<Modality, number>>, days = 30): Promise<number> {
  const plan = await upsertPlan(t.ctx.db, {
    name: `billing-plan-${process.pid}-${++seq}`,
    text_credits: credits.text ?? 0,
    voice_credits: credits.voice ?? 0,
    video_credits: credits.video ?? 0,
    validity_days: days,
  });
  const { subscription } = await grantSubscription(
    t.ctx.db,
    { user_id: patient.id, plan_id: plan.id, payment_reference: `billing-ref-${process.pid}-${++seq}` },
    new Date(),
  );
  return subscription.id;
}

/** A subscription that has already expired (its credits must never be spent). */
export async function grantExpired(t: TestHarness, patient: User, credits: Partial<Record<Modality, number>>): Promise<number> {
  const id = await grant(t, patient, credits, 1);
  await sql`update subscriptions set starts_at = now() - interval '3 days', expires_at = now() - interval '1 day' where id = ${id}`.execute(
    t.ctx.db,
  );
  return id;
}

export interface LiveSession {
  session: Session;
  context: string;
  patient: User;
  doctor: User;
  appointmentId: number | null;
}

/**
 * Starts a session through the API (instant, or from an appointment) and, when `startedAgoMs` is
 * given, makes its billable clock start that long before `at`: a text session `active` since
 * then, a call `connected` since then with both participants in it.
 */
export async function liveSession(
  t: TestHarness,
  opts: {
    modality: Modality;
    credits?: Partial<Record<Modality, number>>;
    startedAgoMs?: number;
    at?: Date;
    patient?: User;
    doctor?: User;
    fromAppointment?: boolean;
    doctorCountry?: string | null;
  },
): Promise<LiveSession> {
  const patient = opts.patient ?? (await t.newPatient());
  const doctor = opts.doctor ?? (await t.newDoctor({ country: opts.doctorCountry ?? null }));
  if (opts.credits) await grant(t, patient, opts.credits);
  let appointmentId: number | null = null;
  let res;
  if (opts.fromAppointment) {
    const appt = await t.newAppointment({ patient, doctor, appointment_type: opts.modality });
    appointmentId = appt.id;
    res = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/start-session`, headers: await t.auth(patient) });
  } else {
    res = await t.app.inject({
      method: 'POST',
      url: '/api/v2/sessions',
      headers: await t.auth(patient),
      payload: { doctor_id: doctor.id, modality: opts.modality },
    });
  }
  expect(res.statusCode, res.body).toBeLessThan(300);
  const id = res.json().data.id as number;
  if (opts.startedAgoMs !== undefined) {
    const at = opts.at ?? new Date();
    const since = new Date(at.getTime() - opts.startedAgoMs);
    if (opts.modality === 'text') {
      await t.ctx.db
        .updateTable('sessions')
        .set({ status: 'active', activated_at: since, patient_first_message_at: since })
        .where('id', '=', id)
        .execute();
      // A chat still going: the doctor's latest message at `at` (a quiet chat ends `inactive`).
      await sql`insert into messages (session_id, sender_id, type, body, created_at)
                values (${id}, ${doctor.id}, 'text', 'still here', ${at})`.execute(t.ctx.db);
    } else {
      await t.ctx.db
        .updateTable('sessions')
        .set({ status: 'connected', connected_at: since, patient_in_call: true, doctor_in_call: true })
        .where('id', '=', id)
        .execute();
    }
  }
  const session = await t.ctx.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  return { session, context: res.json().data.session_context as string, patient, doctor, appointmentId };
}

export const MIN = 60_000;

export async function sessionRow(t: TestHarness, id: number): Promise<Session> {
  return t.ctx.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

export async function ledgerOf(t: TestHarness, where: { session_id?: number; appointment_id?: number }) {
  let q = t.ctx.db.selectFrom('ledger_entries').selectAll().orderBy('unit_no');
  if (where.session_id !== undefined) q = q.where('session_id', '=', where.session_id);
  if (where.appointment_id !== undefined) q = q.where('appointment_id', '=', where.appointment_id);
  return q.execute();
}

export async function remaining(t: TestHarness, subscriptionId: number) {
  return t.ctx.db
    .selectFrom('subscriptions')
    .select(['text_remaining', 'voice_remaining', 'video_remaining'])
    .where('id', '=', subscriptionId)
    .executeTakeFirstOrThrow();
}

export async function walletOf(t: TestHarness, doctorId: number) {
  return t.ctx.db.selectFrom('doctor_wallets').selectAll().where('doctor_id', '=', doctorId).executeTakeFirst();
}

export async function endVia(t: TestHarness, user: User, context: string) {
  return t.app.inject({ method: 'POST', url: `/api/v2/sessions/${context}/end`, headers: await t.auth(user) });
}

/** The value of a labelled counter. */
export async function counterValue(
  metric: { get(): Promise<{ values: { labels: Record<string, string | number>; value: number }[] }> },
  labels: Record<string, string>,
) {
  const m = await metric.get();
  return m.values.find((v) => Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val))?.value ?? 0;
}
