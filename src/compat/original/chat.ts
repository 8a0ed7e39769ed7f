/**
 * Chat over REST: messages, info, mark-read, local-storage.
 *
 * The app's `{id}` is resolved by Laravel's rule (ids.ts) to the core's legacy-chat name — an
 * appointment id or a session context — and then every message operation goes through the
 * core's guarded legacy chat (`resolveLegacyChat` / `sendLegacy`): an appointment-keyed call is
 * allowed, served by its session (would-block) or refused exactly as on `/api/v2/chat/{id}/…`.
 * Delivery and read state are derived from the core's read horizons, never stored here.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { notFound } from '../../lib/errors.js';
import { Literals } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { accessOf, type Actor } from '../../modules/access.js';
import { pollAppointmentSession, readableAppointment } from '../../modules/appointments/service.js';
import { legacyMarkRead, resolveLegacyChat, sendLegacy } from '../../modules/chat/legacy.js';
import type { ChatScope } from '../../modules/chat/repository.js';
import { conversationHistory } from '../../modules/chat/service.js';
import { START_EARLY_MINUTES, contextOf, freshSession, readableSession } from '../../modules/sessions/service.js';
import { parsePositiveId } from '../../modules/session-context.js';
import { getUser, isValidTimezone } from '../../modules/users/service.js';
import { humanErrors, originalProblems } from './human.js';
import { resolveChatTarget, type ChatTarget } from './ids.js';
import { AppMessage, appMessageJson } from './chat-shapes.js';
import { chatPerson, Envelope, OPEN, original } from './shapes.js';

const open = { additionalProperties: true } as const;
const Params = Type.Object({ id: Type.String({ maxLength: 64 }) });
const NullableString = Type.Union([Type.String(), Type.Null()]);

/** The send body (every sender of the app); `id`, `reply_to`, `message_id`… are tolerated (refusing them loses the message). */
const SendBody = Type.Object(
  {
    message: Type.String({ maxLength: 1000 }),
    message_type: Type.Optional(Literals(['text', 'image', 'voice'] as const)),
    media_url: Type.Optional(Type.Union([Type.String({ maxLength: 2048 }), Type.Null()])),
    temp_id: Type.Optional(Type.Union([Type.String({ maxLength: 128 }), Type.Null()])),
    id: Type.Optional(Type.Union([Type.String({ maxLength: 128 }), Type.Integer(), Type.Null()])),
    reply_to: Type.Optional(
      Type.Union([
        Type.Object({ messageId: Type.Optional(Type.Union([Type.String({ maxLength: 128 }), Type.Integer(), Type.Null()])) }, open),
        Type.Null(),
      ]),
    ),
  },
  open,
);

/** The room number the app keys its local history by: the appointment, or the text session. */
const roomOf = (target: ChatTarget, scope: ChatScope): number =>
  target.type === 'appointment' ? target.id : target.type === 'session' ? target.id : (scope.appointmentId ?? scope.sessionId ?? 0);

/** Appointment status as the app's integer. */
const APPOINTMENT_STATUS_CODE: Record<string, number> = {
  pending: 0,
  confirmed: 1,
  cancelled: 2,
  missed: 2,
  expired: 2,
  completed: 3,
  in_progress: 7,
};

/** `YYYY-MM-DD` and `HH:mm:ss` of an instant on a wall clock. */
function wallClock(at: Date, zone: string) {
  // A zone the runtime does not know (an imported row) falls back to UTC rather than failing.
  const timeZone = isValidTimezone(zone) ? zone : 'UTC';
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
    })
      .formatToParts(at)
      .map((p) => [p.type, p.value]),
  );
  return { date: `${parts['year']}-${parts['month']}-${parts['day']}`, time: `${parts['hour']}:${parts['minute']}:${parts['second']}` };
}

export default async function chatRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const anyone = app.auth();
  humanErrors(app);

  app.get(
    '/api/chat/:id/messages',
    {
      preHandler: anyone,
      schema: {
        ...original('The whole history of a chat (appointment id, text session id or text_session_N), oldest first'),
        params: Params,
        querystring: Type.Object({ since: Type.Optional(Type.String({ maxLength: 64 })) }, open),
        response: { 200: Envelope(Type.Array(AppMessage), OPEN), ...originalProblems },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const target = await resolveChatTarget(ctx, actor, req.params.id);
      const conv = await resolveLegacyChat(ctx, actor, target.core, 'getMessages');
      const { messages, horizons } = await conversationHistory(ctx, actor, conv.scope);
      const room = roomOf(target, conv.scope);
      return { success: true as const, data: messages.map((m) => appMessageJson(m, { room, viewerId: actor.id, horizons })) };
    },
  );

  app.post(
    '/api/chat/:id/messages',
    {
      preHandler: anyone,
      schema: {
        ...original('Send a text, image or voice message (temp_id makes a retry return the stored message)'),
        params: Params,
        body: SendBody,
        response: { 200: Envelope(AppMessage, OPEN), ...originalProblems },
      },
    },
    async (req) => {
      const b = req.body;
      const actor = currentUser(req);
      const target = await resolveChatTarget(ctx, actor, req.params.id);
      const replyRaw = b.reply_to?.messageId;
      const replyTo =
        typeof replyRaw === 'number' ? parsePositiveId(String(replyRaw)) : typeof replyRaw === 'string' ? parsePositiveId(replyRaw) : null;
      const clientId = b.temp_id ?? (b.id === undefined || b.id === null ? null : String(b.id));
      const r = await sendLegacy(ctx, actor, target.core, replyTo !== null ? 'replyToMessage' : 'sendMessage', {
        clientMessageId: clientId,
        type: b.message_type ?? 'text',
        body: b.message,
        mediaUrl: b.media_url ?? null,
        replyTo,
        unknownReplyTarget: 'ignore',
      });
      return {
        success: true as const,
        message: 'Message sent',
        data: appMessageJson(r.message, { room: roomOf(target, r.scope), viewerId: actor.id, horizons: [] }),
      };
    },
  );

  app.post(
    '/api/chat/:id/mark-read',
    {
      preHandler: anyone,
      schema: {
        ...original("Mark the chat read (up to `timestamp`) for the caller (older build); `user_id` is ignored: it is the token's user"),
        params: Params,
        body: Type.Union([
          Type.Object(
            {
              timestamp: Type.Optional(Type.String({ maxLength: 64 })),
              user_id: Type.Optional(Type.Union([Type.Integer(), Type.String()])),
            },
            open,
          ),
          Type.Null(),
        ]),
        response: {
          200: Envelope(
            Type.Object({ marked_count: Type.Integer(), last_read_message_id: Type.Union([Type.Integer(), Type.Null()]) }, open),
            OPEN,
          ),
          ...originalProblems,
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const target = await resolveChatTarget(ctx, actor, req.params.id);
      const conv = await resolveLegacyChat(ctx, actor, target.core, 'markAsRead');
      const r = await legacyMarkRead(ctx, actor, conv.scope, req.body?.timestamp);
      return {
        success: true as const,
        message: r.message,
        data: { marked_count: r.marked_count, last_read_message_id: r.last_read_message_id },
      };
    },
  );

  app.get(
    '/api/chat/:id/local-storage',
    {
      preHandler: anyone,
      schema: {
        ...original("The older build's sync: the whole history with a sync stamp"),
        params: Params,
        response: {
          200: Envelope(
            Type.Object(
              { appointment_id: Type.Integer(), messages: Type.Array(AppMessage), last_sync: Type.String(), message_count: Type.Integer() },
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
      const target = await resolveChatTarget(ctx, actor, req.params.id);
      const conv = await resolveLegacyChat(ctx, actor, target.core, 'getMessages');
      const { messages, horizons } = await conversationHistory(ctx, actor, conv.scope);
      const room = roomOf(target, conv.scope);
      return {
        success: true as const,
        data: {
          appointment_id: room,
          messages: messages.map((m) => appMessageJson(m, { room, viewerId: actor.id, horizons })),
          last_sync: ctx.now().toISOString(),
          message_count: messages.length,
        },
      };
    },
  );

  app.get(
    '/api/chat/:id/info',
    {
      preHandler: anyone,
      schema: {
        ...original('Chat header: who the other party is, the appointment type and status, the session (`NaN` is a 404)'),
        params: Params,
        response: {
          200: Envelope(
            Type.Object(
              {
                appointment_id: Type.Integer(),
                other_participant_name: Type.String(),
                other_participant_profile_picture: Type.Null(),
                other_participant_profile_picture_url: Type.Null(),
                appointment_date: Type.String(),
                appointment_time: Type.String(),
                appointment_type: Type.String(),
                status: Type.Union([Type.Integer(), Type.String()]),
                doctor_id: Type.Integer(),
                patient_id: Type.Integer(),
                doctor_name: Type.String(),
                patient_name: Type.String(),
                session_id: Type.Union([Type.Integer(), Type.Null()]),
                session_context: NullableString,
                session_status: NullableString,
                call_unlocked_at: NullableString,
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
      const target = await resolveChatTarget(ctx, actor, req.params.id);
      if (target.type === 'direct') {
        throw notFound('Call', { id: req.params.id });
      }
      const viewerTz = (await getUser(ctx.db, actor.id))?.timezone ?? 'UTC';
      if (target.type === 'session') {
        const s = await freshSession(ctx, await readableSession(ctx.db, actor, target.core));
        const [patient, doctor] = await Promise.all([getUser(ctx.db, s.patient_id), getUser(ctx.db, s.doctor_id)]);
        const p = chatPerson(patient);
        const d = chatPerson(doctor);
        const at = wallClock(s.created_at, viewerTz);
        return {
          success: true as const,
          data: {
            appointment_id: s.id,
            other_participant_name: accessOf(actor, s) === 'doctor' ? p.display_name : d.display_name,
            other_participant_profile_picture: null,
            other_participant_profile_picture_url: null,
            appointment_date: at.date,
            appointment_time: at.time,
            appointment_type: s.kind === 'text' ? 'text' : s.modality === 'voice' ? 'audio' : s.modality,
            status: s.status,
            doctor_id: s.doctor_id,
            patient_id: s.patient_id,
            doctor_name: d.display_name,
            patient_name: p.display_name,
            session_id: s.id,
            session_context: contextOf(s),
            session_status: s.status,
            call_unlocked_at: s.kind === 'call' ? s.created_at.toISOString() : null,
          },
        };
      }
      const a = await readableAppointment(ctx.db, actor as Actor, target.id);
      const { session } = await pollAppointmentSession(ctx.database, actor, a.id);
      const [patient, doctor] = await Promise.all([getUser(ctx.db, a.patient_id), getUser(ctx.db, a.doctor_id)]);
      const p = chatPerson(patient);
      const d = chatPerson(doctor);
      // The app shows the booking on the patient's wall clock.
      const at = wallClock(a.scheduled_at, a.patient_timezone ?? patient?.timezone ?? 'UTC');
      const isCall = a.appointment_type !== 'text';
      return {
        success: true as const,
        data: {
          appointment_id: a.id,
          other_participant_name: accessOf(actor, a) === 'doctor' ? p.display_name : d.display_name,
          other_participant_profile_picture: null,
          other_participant_profile_picture_url: null,
          appointment_date: at.date,
          appointment_time: at.time,
          appointment_type: a.appointment_type,
          status: APPOINTMENT_STATUS_CODE[a.status] ?? 0,
          doctor_id: a.doctor_id,
          patient_id: a.patient_id,
          doctor_name: d.display_name,
          patient_name: p.display_name,
          session_id: session?.id ?? null,
          session_context: session ? contextOf(session) : null,
          session_status: session?.status ?? null,
          // Calls can start from START_EARLY_MINUTES before the booked time (the core's rule).
          call_unlocked_at: isCall ? new Date(a.scheduled_at.getTime() - START_EARLY_MINUTES * 60_000).toISOString() : null,
        },
      };
    },
  );
}
