/**
 * The doctor wallet, the patient's subscription and credits, and the home
 * tabs' dashboard summary, in the shapes the app reads. Balances, credits and earnings are
 * the billing module's and the users module's reads; nothing is computed here but names.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { DomainError } from '../../lib/errors.js';
import { problems } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { pageAppointments } from '../../modules/appointments/service.js';
import { formatMinor } from '../../modules/billing/views.js';
import { unreadNotificationCount } from '../../modules/users/service.js';
import { Envelope, PageQuery, Paginator, original, originalErrorHandler, pageOf, paginator, splitName } from './shapes.js';
import {
  SubscriptionView,
  subscriptionView,
  Money,
  PaymentRates,
  WalletTotals,
  WalletOut,
  Transaction,
  assertDoctor,
  walletSummary,
  transactionsPage,
  DashboardOut,
  upcomingAppointments,
  activeSessions,
} from './account-views.js';

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
