/**
 * What the original app's account screens read, from the billing and users modules' reads: the
 * patient's subscription and credits, the doctor's wallet and its transactions, and the
 * home tabs' dashboard. Nothing is computed here but names.
 */
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../../context.js';
import type { Modality, Session, User } from '../../db/types.js';
import { forbidden } from '../../lib/errors.js';
import { iso } from '../../lib/schemas.js';
import { type AuthUser } from '../../plugins/auth.js';
import { pageAppointments } from '../../modules/appointments/service.js';
import { creditBalances } from '../../modules/users/credits.js';
import { doctorEarnings, doctorWallet, formatMinor, walletTransactionsPage, type WalletTransaction } from '../../modules/billing/views.js';
import { contextOf, liveSessionsOf } from '../../modules/sessions/service.js';
import { findPlan, listSubscriptions, usersByIds } from '../../modules/users/service.js';
import { AppointmentItem, appointmentContext, appointmentItem } from './appointment-shapes.js';
import { PersonOut, person } from './shapes.js';

// ---------------------------------------------------------------------------------------------
// Subscription

export const NullableDate = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

export const SubscriptionView = Type.Object({
  id: Type.Integer({ description: 'The newest active subscription' }),
  plan_id: Type.Integer(),
  planName: Type.String(),
  plan_name: Type.String(),
  plan_price: Type.Number({ description: 'Major units' }),
  plan_currency: Type.String(),
  textSessionsRemaining: Type.Integer(),
  voiceCallsRemaining: Type.Integer(),
  videoCallsRemaining: Type.Integer(),
  text_sessions_remaining: Type.Integer(),
  voice_calls_remaining: Type.Integer(),
  video_calls_remaining: Type.Integer(),
  totalTextSessions: Type.Integer(),
  totalVoiceCalls: Type.Integer(),
  totalVideoCalls: Type.Integer(),
  total_text_sessions: Type.Integer(),
  total_voice_calls: Type.Integer(),
  total_video_calls: Type.Integer(),
  activatedAt: NullableDate,
  activated_at: NullableDate,
  expiresAt: NullableDate,
  expires_at: NullableDate,
  end_date: NullableDate,
  isActive: Type.Literal(true),
  is_active: Type.Literal(true),
  status: Type.Literal(1),
  active_subscriptions_count: Type.Integer(),
  plan: Type.Object({
    id: Type.Integer(),
    name: Type.String(),
    price: Type.Number(),
    currency: Type.String(),
    text_sessions: Type.Integer(),
    voice_calls: Type.Integer(),
    video_calls: Type.Integer(),
    duration: Type.Integer({ description: 'Validity in days' }),
  }),
});

/**
 * The patient's credits as the app's one "subscription": remaining and granted credits summed
 * over the unexpired subscriptions (the ones billing charges from), the plan of the newest one,
 * and the latest expiry. `null` when no subscription is active (the app then shows "no plan").
 */
export async function subscriptionView(ctx: AppContext, user: Pick<AuthUser, 'id' | 'role'>) {
  if (user.role !== 'patient') return null;
  const now = ctx.now();
  const [subs, balances] = await Promise.all([listSubscriptions(ctx.db, user.id), creditBalances(ctx.db, user.id, now)]);
  const active = subs.filter((s) => s.starts_at <= now && s.expires_at > now);
  if (active.length === 0) return null;
  const newest = active.reduce((a, b) =>
    b.starts_at > a.starts_at || (b.starts_at.getTime() === a.starts_at.getTime() && b.id > a.id) ? b : a,
  );
  const latestEnd = active.reduce((a, b) => (b.expires_at > a.expires_at ? b : a)).expires_at;
  const plan = await findPlan(ctx.db, newest.plan_id);
  const total = (m: Modality) => active.reduce((n, s) => n + s[`${m}_credits`], 0);
  const price = (plan?.price_minor ?? 0) / 100;
  const planName = plan?.name ?? 'Plan';
  return {
    id: newest.id,
    plan_id: newest.plan_id,
    planName,
    plan_name: planName,
    plan_price: price,
    plan_currency: plan?.currency ?? 'USD',
    textSessionsRemaining: balances.text,
    voiceCallsRemaining: balances.voice,
    videoCallsRemaining: balances.video,
    text_sessions_remaining: balances.text,
    voice_calls_remaining: balances.voice,
    video_calls_remaining: balances.video,
    totalTextSessions: total('text'),
    totalVoiceCalls: total('voice'),
    totalVideoCalls: total('video'),
    total_text_sessions: total('text'),
    total_voice_calls: total('voice'),
    total_video_calls: total('video'),
    activatedAt: iso(newest.starts_at),
    activated_at: iso(newest.starts_at),
    expiresAt: iso(latestEnd),
    expires_at: iso(latestEnd),
    end_date: iso(latestEnd),
    isActive: true as const,
    is_active: true as const,
    status: 1 as const,
    active_subscriptions_count: active.length,
    plan: {
      id: newest.plan_id,
      name: planName,
      price,
      currency: plan?.currency ?? 'USD',
      text_sessions: plan?.text_credits ?? newest.text_credits,
      voice_calls: plan?.voice_credits ?? newest.voice_credits,
      video_calls: plan?.video_credits ?? newest.video_credits,
      duration: plan?.validity_days ?? 0,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Wallet

export const Money = Type.String({ description: 'Decimal with two places, e.g. "3500.00"' });
export const PaymentRates = Type.Object({ text: Money, audio: Money, video: Money, currency: Type.String() });
export const WalletTotals = { balance: Money, total_earned: Money, total_withdrawn: Money };

export const WalletOut = Type.Object({
  ...WalletTotals,
  currency: Type.String(),
  payment_rates: PaymentRates,
  payment_methods: Type.Array(Type.Unknown(), { description: 'sessiongate keeps no payout methods' }),
});

export const Transaction = Type.Object({
  id: Type.Integer(),
  type: Type.Literal('credit'),
  amount: Money,
  currency: Type.String(),
  description: Type.String(),
  status: Type.Literal('completed'),
  payment_method: Type.Null(),
  patient_name: Type.String(),
  session_id: Type.Union([Type.Integer(), Type.Null()]),
  appointment_id: Type.Union([Type.Integer(), Type.Null()]),
  metadata: Type.Object({
    patient_id: Type.Integer(),
    patient_name: Type.String(),
    session_id: Type.Union([Type.Integer(), Type.Null()]),
    appointment_id: Type.Union([Type.Integer(), Type.Null()]),
    unit_no: Type.Integer(),
    modality: Type.String(),
    session_type: Type.String(),
    reason: Type.String(),
  }),
  created_at: Type.String({ format: 'date-time' }),
});

/** The app's words for a modality: `voice` is an `audio` call to it. */
export const SESSION_TYPE: Record<Modality, 'text' | 'audio' | 'video'> = { text: 'text', voice: 'audio', video: 'video' };
export const DESCRIBED: Record<Modality, string> = { text: 'Text consultation', voice: 'Voice call', video: 'Video call' };

export function transactionJson(e: WalletTransaction, patients: Map<number, User>) {
  const patientName = patients.get(e.patient_id)?.name ?? 'Patient';
  return {
    id: e.id,
    type: 'credit' as const,
    amount: formatMinor(e.amount_minor),
    currency: e.currency,
    description: `${DESCRIBED[e.modality]} with ${patientName} (10-minute unit ${e.unit_no})`,
    status: 'completed' as const,
    payment_method: null,
    patient_name: patientName,
    session_id: e.session_id,
    appointment_id: e.appointment_id,
    metadata: {
      patient_id: e.patient_id,
      patient_name: patientName,
      session_id: e.session_id,
      appointment_id: e.appointment_id,
      unit_no: e.unit_no,
      modality: e.modality,
      session_type: SESSION_TYPE[e.modality],
      reason: e.reason,
    },
    created_at: iso(e.created_at)!,
  };
}

export function assertDoctor(user: AuthUser, what: string) {
  if (user.role !== 'doctor') throw forbidden(`Only doctors can see ${what}.`);
}

/** Balance, totals and the per-unit rate. sessiongate pays no money out, so nothing is withdrawn. */
export async function walletSummary(ctx: AppContext, user: AuthUser) {
  const [wallet, earned] = await Promise.all([doctorWallet(ctx, user, { limit: 1 }), doctorEarnings(ctx.db, user.id)]);
  const rate = formatMinor(wallet.payout_per_unit.amount_minor);
  return {
    totals: { balance: wallet.balance, total_earned: formatMinor(earned.total_minor), total_withdrawn: formatMinor(0) },
    currency: wallet.currency,
    // One charged 10-minute unit pays the same whatever the modality.
    payment_rates: { text: rate, audio: rate, video: rate, currency: wallet.payout_per_unit.currency },
    earned,
  };
}

export async function transactionsPage(ctx: AppContext, doctorId: number, page: { page: number; perPage: number }) {
  const { rows, total } = await walletTransactionsPage(ctx.db, doctorId, page);
  const patients = new Map(
    (
      await usersByIds(
        ctx.db,
        rows.map((r) => r.patient_id),
      )
    ).map((u) => [u.id, u]),
  );
  return { items: rows.map((r) => transactionJson(r, patients)), total };
}

// ---------------------------------------------------------------------------------------------
// Dashboard

export const ActiveSession = Type.Object({
  id: Type.Integer(),
  session_context: Type.String(),
  patient_id: Type.Integer(),
  doctor_id: Type.Integer(),
  status: Type.String(),
  appointment_id: Type.Union([Type.Integer(), Type.Null()]),
  started_at: Type.String({ format: 'date-time' }),
  patient: PersonOut,
  doctor: PersonOut,
});

export const DashboardOut = Type.Object({
  user: Type.Object({
    id: Type.Integer(),
    first_name: Type.String(),
    last_name: Type.String(),
    display_name: Type.String(),
    user_type: Type.String(),
    profile_picture_url: Type.Null(),
  }),
  notifications_stats: Type.Object({ unread_count: Type.Integer() }),
  timestamp: Type.String({ format: 'date-time' }),
  doctor_data: Type.Optional(
    Type.Object({
      wallet: Type.Object(WalletTotals),
      payment_rates: PaymentRates,
      appointments: Type.Array(AppointmentItem),
      active_sessions: Type.Array(ActiveSession),
      stats: Type.Object({
        rating: Type.Number(),
        total_ratings: Type.Integer(),
        pending_appointments_count: Type.Integer(),
      }),
    }),
  ),
  patient_data: Type.Optional(
    Type.Object({
      subscription: Type.Union([SubscriptionView, Type.Null()]),
      appointments: Type.Array(AppointmentItem),
      active_sessions: Type.Array(ActiveSession),
    }),
  ),
});

export async function upcomingAppointments(ctx: AppContext, user: AuthUser) {
  // The home tabs' "upcoming": pending and confirmed, soonest first, ten of them (as Laravel).
  const { rows } = await pageAppointments(ctx.db, user, { page: 1, perPage: 10, statuses: ['pending', 'confirmed'], order: 'asc' });
  const { people, sessions } = await appointmentContext(ctx.db, rows);
  return rows.map((a) => appointmentItem(a, people, a.session_id === null ? undefined : sessions.get(a.session_id)));
}

export async function activeSessions(ctx: AppContext, user: AuthUser) {
  const live: Session[] = await liveSessionsOf(ctx.db, user);
  const people = new Map(
    (
      await usersByIds(
        ctx.db,
        live.flatMap((s) => [s.patient_id, s.doctor_id]),
      )
    ).map((u) => [u.id, u]),
  );
  return live.map((s) => ({
    id: s.id,
    session_context: contextOf(s),
    patient_id: s.patient_id,
    doctor_id: s.doctor_id,
    status: s.status,
    appointment_id: s.appointment_id,
    started_at: iso(s.created_at)!,
    patient: person(people.get(s.patient_id), s.patient_id),
    doctor: person(people.get(s.doctor_id), s.doctor_id),
  }));
}

// ---------------------------------------------------------------------------------------------
// Routes
