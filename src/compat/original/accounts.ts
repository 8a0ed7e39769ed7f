/**
 * The doctor wallet (reference §7), the patient's subscription and credits (§8), and the home
 * tabs' dashboard summary (§1.7), in the shapes the app reads. Balances, credits and earnings are
 * the billing module's and the users module's reads; nothing is computed here but names.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AppContext } from '../../context.js';
import type { Modality, Session, User } from '../../db/types.js';
import { DomainError, forbidden } from '../../lib/errors.js';
import { iso, problems } from '../../lib/schemas.js';
import { currentUser, type AuthUser } from '../../plugins/auth.js';
import { pageAppointments } from '../../modules/appointments/service.js';
import { creditBalances } from '../../modules/billing/credits.js';
import { doctorEarnings, doctorWallet, formatMinor, walletTransactionsPage, type WalletTransaction } from '../../modules/billing/views.js';
import { contextOf, liveSessionsOf } from '../../modules/sessions/service.js';
import { findPlan, listSubscriptions, unreadNotificationCount, usersByIds } from '../../modules/users/service.js';
import { AppointmentItem, appointmentContext, appointmentItem } from './appointments.js';
import {
  Envelope,
  PageQuery,
  Paginator,
  PersonOut,
  original,
  originalErrorHandler,
  pageOf,
  paginator,
  person,
  splitName,
} from './shapes.js';

// ---------------------------------------------------------------------------------------------
// Subscription (§8)

const NullableDate = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

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
// Wallet (§7)

const Money = Type.String({ description: 'Decimal with two places, e.g. "3500.00"' });
const PaymentRates = Type.Object({ text: Money, audio: Money, video: Money, currency: Type.String() });
const WalletTotals = { balance: Money, total_earned: Money, total_withdrawn: Money };

const WalletOut = Type.Object({
  ...WalletTotals,
  currency: Type.String(),
  payment_rates: PaymentRates,
  payment_methods: Type.Array(Type.Unknown(), { description: 'sessiongate keeps no payout methods' }),
});

const Transaction = Type.Object({
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
const SESSION_TYPE: Record<Modality, 'text' | 'audio' | 'video'> = { text: 'text', voice: 'audio', video: 'video' };
const DESCRIBED: Record<Modality, string> = { text: 'Text consultation', voice: 'Voice call', video: 'Video call' };

function transactionJson(e: WalletTransaction, patients: Map<number, User>) {
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

function assertDoctor(user: AuthUser, what: string) {
  if (user.role !== 'doctor') throw forbidden(`Only doctors can see ${what}.`);
}

/** Balance, totals and the per-unit rate. sessiongate pays no money out, so nothing is withdrawn. */
async function walletSummary(ctx: AppContext, user: AuthUser) {
  const [wallet, earned] = await Promise.all([doctorWallet(ctx, user, { limit: 1 }), doctorEarnings(ctx.db, user.id)]);
  const rate = formatMinor(wallet.payout_per_unit.amount_minor);
  return {
    totals: { balance: wallet.balance, total_earned: formatMinor(earned.total_minor), total_withdrawn: formatMinor(0) },
    currency: wallet.currency,
    // One charged 10-minute unit pays the same whatever the modality (SPEC §2.5).
    payment_rates: { text: rate, audio: rate, video: rate, currency: wallet.payout_per_unit.currency },
    earned,
  };
}

async function transactionsPage(ctx: AppContext, doctorId: number, page: { page: number; perPage: number }) {
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
// Dashboard (§1.7)

const ActiveSession = Type.Object({
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

const DashboardOut = Type.Object({
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

async function upcomingAppointments(ctx: AppContext, user: AuthUser) {
  // The home tabs' "upcoming": pending and confirmed, soonest first, ten of them (as Laravel).
  const { rows } = await pageAppointments(ctx.db, user, { page: 1, perPage: 10, statuses: ['pending', 'confirmed'], order: 'asc' });
  const { people, sessions } = await appointmentContext(ctx.db, rows);
  return rows.map((a) => appointmentItem(a, people, a.session_id === null ? undefined : sessions.get(a.session_id)));
}

async function activeSessions(ctx: AppContext, user: AuthUser) {
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

export default async function accountsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.setErrorHandler(originalErrorHandler);
  const { ctx } = app;
  const anyone = app.auth();

  app.get(
    '/api/subscription',
    {
      preHandler: anyone,
      schema: {
        ...original(
          'The patient’s credits (camelCase and snake_case keys); `data: null` without an active plan',
          'Credits are summed over the unexpired subscriptions; doctors have none.',
        ),
        response: { 200: Envelope(Type.Union([SubscriptionView, Type.Null()])), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req) => ({ success: true as const, data: await subscriptionView(ctx, currentUser(req)) }),
  );

  app.get(
    '/api/doctor/wallet',
    {
      preHandler: anyone,
      schema: {
        ...original('The doctor’s balance, earnings and per-unit rates (decimals as strings)'),
        response: { 200: Envelope(WalletOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req) => {
      const user = currentUser(req);
      assertDoctor(user, 'a wallet');
      const w = await walletSummary(ctx, user);
      return { success: true as const, data: { ...w.totals, currency: w.currency, payment_rates: w.payment_rates, payment_methods: [] } };
    },
  );

  app.get(
    '/api/doctor/wallet/transactions',
    {
      preHandler: anyone,
      schema: {
        ...original('The doctor’s earnings, one credit per charged 10-minute unit, newest first'),
        querystring: PageQuery,
        response: { 200: Envelope(Paginator(Transaction)), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req) => {
      const user = currentUser(req);
      assertDoctor(user, 'wallet transactions');
      const page = pageOf(req.query, 10);
      const { items, total } = await transactionsPage(ctx, user.id, page);
      return { success: true as const, data: paginator('/api/doctor/wallet/transactions', items, page, total) };
    },
  );

  app.get(
    '/api/doctor/wallet/earnings-summary',
    {
      preHandler: anyone,
      schema: {
        ...original('Earnings by consultation type and the latest five transactions'),
        response: {
          200: Envelope(
            Type.Object({
              wallet: Type.Object(WalletTotals),
              earnings_by_type: Type.Object({ text: Money, audio: Money, video: Money }),
              recent_transactions: Type.Array(Transaction),
              payment_rates: PaymentRates,
            }),
          ),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN'),
        },
      },
    },
    async (req) => {
      const user = currentUser(req);
      assertDoctor(user, 'an earnings summary');
      const [w, recent] = await Promise.all([walletSummary(ctx, user), transactionsPage(ctx, user.id, { page: 1, perPage: 5 })]);
      const by = w.earned.by_modality;
      return {
        success: true as const,
        data: {
          wallet: w.totals,
          earnings_by_type: { text: formatMinor(by.text), audio: formatMinor(by.voice), video: formatMinor(by.video) },
          recent_transactions: recent.items,
          payment_rates: w.payment_rates,
        },
      };
    },
  );

  app.get(
    '/api/doctor/wallet/payment-rates',
    {
      preHandler: anyone,
      schema: {
        ...original('What the doctor earns per charged 10-minute unit'),
        response: { 200: Envelope(PaymentRates), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req) => {
      const user = currentUser(req);
      assertDoctor(user, 'payment rates');
      return { success: true as const, data: (await walletSummary(ctx, user)).payment_rates };
    },
  );

  app.get(
    '/api/doctor/wallet/withdrawal-requests',
    {
      preHandler: anyone,
      schema: {
        ...original('Withdrawal requests: always empty (sessiongate takes none)'),
        querystring: PageQuery,
        response: { 200: Envelope(Paginator(Type.Unknown())), ...problems('UNAUTHENTICATED', 'FORBIDDEN') },
      },
    },
    async (req) => {
      assertDoctor(currentUser(req), 'withdrawal requests');
      const page = pageOf(req.query, 10);
      return { success: true as const, data: paginator('/api/doctor/wallet/withdrawal-requests', [], page, 0) };
    },
  );

  app.post(
    '/api/doctor/wallet/withdraw',
    {
      preHandler: anyone,
      schema: {
        ...original(
          'Request a payout: not available here (404 with a message for the doctor)',
          'sessiongate records earnings but pays nothing out. Route this path to the platform’s payout service if one settles from this ledger.',
        ),
        body: Type.Object({}, { description: 'Any body; nothing is read' }),
        response: { ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => {
      assertDoctor(currentUser(req), 'a wallet');
      throw new DomainError(
        'NOT_FOUND',
        'Withdrawals cannot be requested in the app at the moment. Your earnings are safe in your wallet; please contact support to arrange a payout.',
        { served_by: 'platform' },
      );
    },
  );

  app.get(
    '/api/dashboard/summary',
    {
      preHandler: anyone,
      schema: {
        ...original('The home tab: upcoming appointments, live sessions, wallet (doctor) or credits (patient), unread notifications'),
        response: { 200: Envelope(DashboardOut), ...problems('UNAUTHENTICATED') },
      },
    },
    async (req) => {
      const user = currentUser(req);
      const [unread, appointments, sessions] = await Promise.all([
        unreadNotificationCount(ctx.db, user.id),
        upcomingAppointments(ctx, user),
        activeSessions(ctx, user),
      ]);
      const base = {
        user: { id: user.id, ...splitName(user.name), display_name: user.name, user_type: user.role, profile_picture_url: null },
        notifications_stats: { unread_count: unread },
        timestamp: ctx.now().toISOString(),
      };
      if (user.role === 'doctor') {
        const [w, pending] = await Promise.all([
          walletSummary(ctx, user),
          pageAppointments(ctx.db, user, { page: 1, perPage: 1, statuses: ['pending'] }),
        ]);
        return {
          success: true as const,
          data: {
            ...base,
            doctor_data: {
              wallet: w.totals,
              payment_rates: w.payment_rates,
              appointments,
              active_sessions: sessions,
              // Ratings live with doctor profiles in the platform's main service, not here.
              stats: { rating: 0, total_ratings: 0, pending_appointments_count: pending.total },
            },
          },
        };
      }
      if (user.role === 'patient') {
        return {
          success: true as const,
          data: { ...base, patient_data: { subscription: await subscriptionView(ctx, user), appointments, active_sessions: sessions } },
        };
      }
      return { success: true as const, data: base };
    },
  );
}
