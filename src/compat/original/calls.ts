/**
 * Call sessions of the original app (with the two routes only its signalling
 * server called): start, answer, decline, end, deduction, status, and `/appointments/{id}/end`.
 *
 * A translation over the core's call state machine and billing:
 *
 * | app request                          | core                                                        |
 * |--------------------------------------|-------------------------------------------------------------|
 * | start, `direct_session_<ms>` + doctor | `createInstantSession` with the key as routing key (idempotent per key), then the caller joins |
 * | start, `"57"`                         | `startAppointmentSession(57)` (its one call session), then the caller joins |
 * | answer                               | the callee joins → `connected`; `connected_at` is the billing clock |
 * | decline                              | `decline`                                                   |
 * | end                                  | `hangup`: connected → ended and settled; ringing → cancel / decline |
 * | deduction                            | `billSession`: what the server's clock has made due, once per unit |
 * | `/appointments/{id}/end`             | the guarded legacy `end-session` (SessionContextGuard) |
 *
 * The client's `session_duration` and `was_connected` are read by nobody: the server's clock bills.
 * Core call states map to the app's: waiting / ringing → `connecting`, connected → `active`,
 * ended / missed / expired → `ended` (`answered` is never reported: answering connects at once).
 * Refusals that must stop the app are 4xx problem documents with a human `message` (the app
 * treats any 2xx as success, even with `success: false`).
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AppContext } from '../../context.js';
import type { Modality, Session } from '../../db/types.js';
import { DomainError, invalid, notFound } from '../../lib/errors.js';
import { problems } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { assertCanRead, assertParticipant, type Actor } from '../../modules/access.js';
import { getAppointmentOrThrow } from '../../modules/appointments/service.js';
import { usableCredits } from '../../modules/users/credits.js';
import { legacyBilling } from '../../modules/billing/legacy.js';
import { LegacyBillingOut } from '../../modules/billing/schemas.js';
import { billSession } from '../../modules/billing/session-billing.js';
import { formatSessionContext, parsePositiveId, parseSessionContext } from '../../modules/session-context.js';
import { modalityForAppointmentType } from '../../modules/appointments/modality.js';
import {
  callAction,
  contextOf,
  createInstantSession,
  freshSession,
  sessionByContext,
  sessionByRoutingKey,
  startAppointmentSession,
  type CallAction,
} from '../../modules/sessions/service.js';
import {
  ActionOut,
  CallType,
  DeductionOut,
  EndBody,
  EndOut,
  IdParams,
  KeyBody,
  KeyParams,
  StartBody,
  StartOut,
  StatusOut,
  callData,
} from './call-shapes.js';

const TAGS = ['original'];
const DIRECT_PREFIX = 'direct_session_';

/**
 * Resolves the `appointment_id` of a call request (any of the app's id forms) to the call session, through the
 * core's look-ups and access gate: `direct_session_<ms>` → the routing key's call;
 * `"57"` → appointment 57's session (participants only); `call_session:N` / `call_session_N` → N.
 * `null` when the id names nothing that has a call yet.
 */
export async function findCall(ctx: AppContext, actor: Actor, key: string): Promise<Session | null> {
  if (key.startsWith(DIRECT_PREFIX)) {
    try {
      return await sessionByRoutingKey(ctx.db, actor, key);
    } catch (err) {
      if (err instanceof DomainError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
  }
  const appointmentId = parsePositiveId(key);
  if (appointmentId !== null) {
    const a = await getAppointmentOrThrow(ctx.db, appointmentId);
    assertCanRead(actor, a);
    // No session yet, or a text appointment's session: no call (status answers data: null).
    if (a.session_id === null || modalityForAppointmentType(a.appointment_type) === 'text') return null;
    return sessionByContext(ctx.db, formatSessionContext('call', a.session_id));
  }
  const parsed = parseSessionContext(key);
  if (parsed.type === 'session' && parsed.kind === 'call') {
    const s = await sessionByContext(ctx.db, parsed.context);
    assertCanRead(actor, s);
    return s;
  }
  if (parsed.type === 'nonexistent') return null;
  throw invalid('appointment_id must be an appointment id, a direct_session_ key or call_session:{id}', { appointment_id: key });
}

async function callOrThrow(ctx: AppContext, actor: Actor, key: string): Promise<Session> {
  const s = await findCall(ctx, actor, key);
  if (!s) throw notFound('Call', { appointment_id: key });
  return s;
}

const modalityOf = (t: Static<typeof CallType>): Modality => (t === 'video' ? 'video' : 'voice');

/** The app opens its busy dialog on this exact text. */
const DOCTOR_BUSY_MESSAGE = 'Doctor is currently in another session';

async function startCall(ctx: AppContext, actor: Actor, body: Static<typeof StartBody>): Promise<Session> {
  const key = String(body.appointment_id);
  const modality = modalityOf(body.call_type);
  let s: Session;
  if (key.startsWith(DIRECT_PREFIX)) {
    if (body.doctor_id === undefined) throw invalid('doctor_id is required to call a doctor now');
    try {
      s = await createInstantSession(ctx, actor, { doctor_id: Number(body.doctor_id), modality, routing_key: key });
    } catch (err) {
      if (err instanceof DomainError && err.code === 'CONFLICT' && 'doctor_id' in err.details) {
        throw new DomainError('CONFLICT', DOCTOR_BUSY_MESSAGE, err.details);
      }
      throw err;
    }
  } else {
    const appointmentId = parsePositiveId(key);
    if (appointmentId === null) throw invalid('appointment_id must be an appointment id or a direct_session_ key', { appointment_id: key });
    const a = await getAppointmentOrThrow(ctx.db, appointmentId);
    assertParticipant(actor, a);
    const booked = modalityForAppointmentType(a.appointment_type);
    if (booked === 'text') throw invalid('This appointment is a text consultation; it has no call', { appointment_id: a.id });
    if (booked !== modality) {
      throw invalid(`This appointment is a ${booked ?? a.appointment_type} call, not a ${modality} call`, { appointment_id: a.id });
    }
    s = (await startAppointmentSession(ctx, actor, a.id)).session;
  }
  // The caller is in the call from the start: the callee's answer connects it.
  return (await callAction(ctx, actor, contextOf(s), 'join')).after;
}

/** What a call door can refuse: the core's participant, state, credit and context errors. */
const CALL_PROBLEMS = problems(
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'INSUFFICIENT_CREDITS',
  'SESSION_NOT_ACTIVE',
  'SESSION_CONTEXT_REQUIRED',
);

export default async function callsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const anyone = app.auth();
  const common = { tags: TAGS, deprecated: true };

  app.post(
    '/api/call-sessions/start',
    {
      preHandler: anyone,
      config: { rateLimit: { max: ctx.config.rateLimitCreatePerMinute, timeWindow: '1 minute' } },
      schema: {
        ...common,
        summary: 'Start a voice or video call: instant (direct_session_<ms> + doctor_id) or of a booked appointment',
        body: StartBody,
        response: {
          200: StartOut,
          ...CALL_PROBLEMS,
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const s = await startCall(ctx, actor, req.body);
      const data = callData(s);
      return {
        success: true as const,
        message: 'Call session started',
        data,
        appointment_id: data.appointment_id,
        call_type: s.modality,
        remaining_calls: await usableCredits(ctx.db, s.patient_id, s.modality),
      };
    },
  );

  const action = (path: string, act: CallAction, summary: string, message: string) =>
    app.post(
      path,
      {
        preHandler: anyone,
        schema: {
          ...common,
          summary,
          body: KeyBody,
          response: {
            200: ActionOut,
            ...CALL_PROBLEMS,
          },
        },
      },
      async (req) => {
        const actor = currentUser(req);
        const s = await callOrThrow(ctx, actor, String(req.body.appointment_id));
        const { after } = await callAction(ctx, actor, contextOf(s), act);
        return { success: true as const, message, data: callData(after) };
      },
    );
  action('/api/call-sessions/answer', 'join', 'The callee answers: both are in the call, billing runs from now', 'Call answered');
  action('/api/call-sessions/decline', 'decline', 'The callee declines a ringing call', 'Call declined');

  const hangUp = async (actor: Actor, key: string) => {
    const s = await callOrThrow(ctx, actor, key);
    const { after } = await callAction(ctx, actor, contextOf(s), 'hangup');
    const connectedMs = after.connected_at && after.ended_at ? after.ended_at.getTime() - after.connected_at.getTime() : 0;
    return {
      success: true as const,
      message: after.status === 'ended' || after.status === 'missed' ? 'Call ended' : 'Call cancelled',
      data: {
        ...callData(after),
        was_connected: after.connected_at !== null,
        duration_seconds: Math.max(0, Math.floor(connectedMs / 1000)),
        units_billed: after.units_billed,
      },
    };
  };

  app.post(
    '/api/call-sessions/end',
    {
      preHandler: anyone,
      schema: {
        ...common,
        summary: 'Hang up, cancel or decline; the server bills the connected time by its own clock',
        body: KeyBody,
        response: {
          200: EndOut,
          ...CALL_PROBLEMS,
        },
      },
    },
    async (req) => hangUp(currentUser(req), String(req.body.appointment_id)),
  );

  app.post(
    '/api/call-sessions/deduction',
    {
      preHandler: anyone,
      schema: {
        ...common,
        summary: "Billing tick of the app: answers what the server's clock has charged (never a second charge)",
        body: KeyBody,
        response: {
          200: DeductionOut,
          ...CALL_PROBLEMS,
        },
      },
    },
    async (req, reply) => {
      const actor = currentUser(req);
      const s = await callOrThrow(ctx, actor, String(req.body.appointment_id));
      assertParticipant(actor, s);
      const outcome = await billSession(ctx, s.id, { skipLocked: false });
      if (outcome.result === 'skipped') throw notFound('Call', { appointment_id: String(req.body.appointment_id) });
      const after = outcome.session;
      if (outcome.result === 'ended_no_credit') {
        // The app ends the call on a 400 whose text contains "no remaining".
        const message = 'Call ended: no remaining call credits';
        return reply
          .code(400)
          .type('application/problem+json')
          .send({
            type: 'https://sessiongate.dev/problems/insufficient-credits',
            title: 'Bad Request',
            status: 400,
            detail: message,
            success: false,
            error_code: 'INSUFFICIENT_CREDITS',
            message,
            session_context: contextOf(after),
            units_billed: after.units_billed,
          });
      }
      const charged = 'charged' in outcome ? outcome.charged : 0;
      return {
        success: true as const,
        message: charged > 0 ? `Charged ${charged} unit(s)` : 'Nothing new to charge',
        data: {
          ...callData(after),
          deductions_processed: charged,
          total_deductions: after.units_billed,
          remaining_calls: await usableCredits(ctx.db, after.patient_id, after.modality),
        },
      };
    },
  );

  const status = async (actor: Actor, key: string) => {
    const s = await findCall(ctx, actor, key);
    return { success: true as const, data: s ? callData(await freshSession(ctx, s)) : null };
  };

  app.get(
    '/api/call-sessions/:key/status',
    {
      preHandler: anyone,
      schema: {
        ...common,
        summary: 'The call named by a key, or data: null',
        params: KeyParams,
        response: { 200: StatusOut, ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED') },
      },
    },
    async (req) => status(currentUser(req), req.params.key),
  );

  app.get(
    '/api/appointments/:id/status',
    {
      preHandler: anyone,
      schema: {
        ...common,
        summary: "The appointment's (or call key's) call session, or data: null",
        params: IdParams,
        response: { 200: StatusOut, ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND') },
      },
    },
    async (req) => status(currentUser(req), req.params.id),
  );

  app.post(
    '/api/appointments/:id/end',
    {
      preHandler: anyone,
      schema: {
        ...common,
        summary: 'End an appointment (legacy end-session behind the SessionContextGuard); a call key hangs that call up',
        params: IdParams,
        body: EndBody,
        response: {
          200: Type.Union([LegacyBillingOut, EndOut]),
          ...problems(
            'UNAUTHENTICATED',
            'FORBIDDEN',
            'NOT_FOUND',
            'CONFLICT',
            'INSUFFICIENT_CREDITS',
            'SESSION_NOT_ACTIVE',
            'SESSION_CONTEXT_REQUIRED',
            'SESSION_BILLING_REQUIRED',
          ),
        },
      },
    },
    async (req, reply) => {
      const actor = currentUser(req);
      const appointmentId = parsePositiveId(req.params.id);
      if (appointmentId === null) {
        if (!req.params.id.startsWith(DIRECT_PREFIX) && !req.params.id.startsWith('call_session')) {
          throw invalid('Only an appointment id or a call key can be ended here', { id: req.params.id });
        }
        return hangUp(actor, req.params.id);
      }
      const r = await legacyBilling(ctx, actor, { endpoint: 'end-session', appointmentId });
      return reply.code(r.status).header('idempotent-replayed', String(r.replayed)).send(r.body);
    },
  );
}
