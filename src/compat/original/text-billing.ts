/**
 * The original app's billing calls for text consultations: the text-session billing tick
 * and the text-appointment calls. The server bills on its own; a tick only brings the core's
 * billing up to date and answers what it billed, and the `/text-appointments/*` deductions go
 * through the core's guarded legacy billing, so the SessionContextGuard decides them exactly as
 * on /api/v2.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { invalid } from '../../lib/errors.js';
import { currentUser } from '../../plugins/auth.js';
import { assertParticipant } from '../../modules/access.js';
import { readableAppointment } from '../../modules/appointments/service.js';
import { DEDUCTION_REASONS, legacyBilling, type LegacyBillingResponse } from '../../modules/billing/legacy.js';
import { billSession } from '../../modules/billing/session-billing.js';
import { freshSession, sessionByContext, startAppointmentSession } from '../../modules/sessions/service.js';
import { humanErrors, originalProblems } from './human.js';
import { idOf, LooseId, textSessionContext } from './ids.js';
import { AnyBody, Envelope, OPEN, OpenObject as Obj, original, PathId as Params } from './shapes.js';
import { textSessionJson } from './session-shapes.js';

const open = OPEN;

export default async function textBillingRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const anyone = app.auth();
  humanErrors(app);

  app.post(
    '/api/text-sessions/:id/auto-deduction',
    {
      preHandler: anyone,
      schema: {
        ...original("The app's billing tick: the server bills on its own; this answers what it billed (never a second charge)"),
        params: Params,
        body: AnyBody,
        response: {
          200: Envelope(
            Type.Object(
              {
                deductions_processed: Type.Integer(),
                total_deductions: Type.Integer(),
                session_status: Type.String(),
                remaining_time_minutes: Type.Integer(),
              },
              open,
            ),
            OPEN,
          ),
          ...originalProblems,
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const s = await sessionByContext(ctx.db, textSessionContext(req.params.id));
      assertParticipant(actor, s);
      // Brings the core's billing up to date (what its tick would do next); units already charged
      // are never charged again (the ledger's per-unit high-water mark).
      const outcome = await billSession(ctx, s.id, { skipLocked: false });
      const charged = 'charged' in outcome ? outcome.charged : 0;
      const after = await freshSession(ctx, await sessionByContext(ctx.db, textSessionContext(req.params.id)));
      const json = await textSessionJson(ctx, after, actor);
      return {
        success: true as const,
        message: charged > 0 ? `${charged} unit(s) billed by the server` : 'Nothing new to bill',
        data: {
          deductions_processed: charged,
          total_deductions: after.units_billed,
          session_status: after.status,
          remaining_time_minutes: json.remaining_time_minutes,
        },
      };
    },
  );

  // ---- text appointments ---------------------------------------------------------------------

  const AppointmentBody = Type.Object({ appointment_id: LooseId }, open);
  const legacyOut = { 200: Envelope(Obj, OPEN), ...originalProblems };
  const sendLegacy = (reply: FastifyReply, r: LegacyBillingResponse) => reply.code(r.status).send(r.body);

  app.post(
    '/api/text-appointments/start-session',
    {
      preHandler: anyone,
      schema: {
        ...original("A text appointment's session (created when its time has come; idempotent)"),
        body: AppointmentBody,
        response: { 200: Envelope(Obj, OPEN), ...originalProblems },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const { session } = await startAppointmentSession(ctx, actor, idOf(req.body.appointment_id));
      const json = await textSessionJson(ctx, session, actor);
      return {
        success: true as const,
        message: 'Session started',
        data: {
          ...json,
          start_time: json.activated_at ?? json.started_at,
          sessions_used: json.sessions_used,
        },
      };
    },
  );

  app.post(
    '/api/text-appointments/update-activity',
    {
      preHandler: anyone,
      schema: {
        ...original('Activity ping: the server tracks activity from messages, so this only confirms the caller may see the appointment'),
        body: AppointmentBody,
        response: legacyOut,
      },
    },
    async (req) => {
      const a = await readableAppointment(ctx.db, currentUser(req), idOf(req.body.appointment_id));
      return { success: true as const, message: 'Activity noted', data: { appointment_id: a.id } };
    },
  );

  app.post(
    '/api/text-appointments/process-deduction',
    {
      preHandler: anyone,
      schema: {
        ...original('Legacy (guarded): deduct units for a text appointment'),
        body: Type.Object(
          {
            appointment_id: LooseId,
            sessions_to_deduct: Type.Integer({ minimum: 1, maximum: 100 }),
            reason: Type.String({ maxLength: 32 }),
          },
          open,
        ),
        response: legacyOut,
      },
    },
    async (req, reply) => {
      const reason = req.body.reason as (typeof DEDUCTION_REASONS)[number];
      if (!DEDUCTION_REASONS.includes(reason)) {
        throw invalid(`The deduction reason must be one of ${DEDUCTION_REASONS.join(', ')}; nothing was charged`, {
          reason: req.body.reason,
        });
      }
      const appointmentId = idOf(req.body.appointment_id);
      return sendLegacy(
        reply,
        await legacyBilling(ctx, currentUser(req), {
          endpoint: 'process-deduction',
          appointmentId,
          deduction: { appointment_id: appointmentId, sessions_to_deduct: req.body.sessions_to_deduct, reason },
        }),
      );
    },
  );

  app.post(
    '/api/text-appointments/end-session',
    {
      preHandler: anyone,
      schema: {
        ...original('Legacy (guarded): end a text appointment; the server computes what is due (sessions_to_deduct is ignored)'),
        body: AppointmentBody,
        response: legacyOut,
      },
    },
    async (req, reply) =>
      sendLegacy(
        reply,
        await legacyBilling(ctx, currentUser(req), { endpoint: 'end-session', appointmentId: idOf(req.body.appointment_id) }),
      ),
  );
}
