/**
 * Chat routes: session chat under `/api/v2/sessions/{context}/…`; the legacy
 * appointment-addressed routes under `/api/v2/chat/{id}/…` behind the SessionContextGuard
 * are registered from `legacy-routes.ts`.
 *
 * Every request to a chat route — served, refused or blocked — counts once in
 * `chat_operations_total{operation, path}` (path "session" or "legacy").
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ok, problems, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { chatSendLimit } from '../../plugins/rate-limit.js';
import type { ChatOperation } from '../guard/decision.js';
import { freshSession, participantSession, readableSession, sessionByContext } from '../sessions/service.js';
import { legacyChatRoutes, parsePage, type ChatPath, type Counted } from './legacy-routes.js';
import {
  ChatMessageOut,
  ContextParams,
  ListQuery,
  MessagePageOut,
  MessageParams,
  ReactionBody,
  ReactionParams,
  ReactionResultOut,
  ReadBody,
  ReadOut,
  SendBody,
  TypingBody,
  TypingOut,
} from './schemas.js';
import { parseContextOrThrow, sendToSession } from './send.js';
import { listConversation, markRead, sessionScope, setReaction, setTyping } from './service.js';
import { TypingRegistry } from './typing.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Who is typing where; shared by the HTTP routes and the WebSocket gateway. */
    chatTyping: TypingRegistry;
  }
}

async function chatPlugin(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const typing = new TypingRegistry(ctx.bus);
  app.decorate('chatTyping', typing);
  app.addHook('onClose', async () => typing.close());
  const anyone = app.auth();

  /**
   * Route-level hook counting every request of the route (errors included). Where the operation
   * depends on the body (a reply is a send with `reply_to_message_id`; `typing: false` is a stop),
   * a request refused before its body was read (401) counts as the route's first operation.
   */
  const counters = new Map<string, { inc(): void }>();
  const counter = (operation: ChatOperation, path: ChatPath) => {
    let c = counters.get(`${operation}:${path}`);
    if (!c) counters.set(`${operation}:${path}`, (c = ctx.metrics.guard.chatOperations.labels({ operation, path })));
    return c;
  };
  const counted: Counted = (path, op) => ({
    onSend: async (req: FastifyRequest, _reply: FastifyReply, payload: unknown) => {
      counter(typeof op === 'function' ? op(req) : op, path).inc();
      return payload;
    },
  });
  const sendOrReply = (req: FastifyRequest): ChatOperation => {
    const body = req.body as { reply_to_message_id?: unknown } | undefined;
    return body && typeof body === 'object' && body.reply_to_message_id != null ? 'replyToMessage' : 'sendMessage';
  };

  // ---- session chat -----------------------------------------------------------------------

  app.post(
    '/api/v2/sessions/:context/messages',
    {
      preHandler: anyone,
      config: { rateLimit: chatSendLimit(app) },
      ...counted('session', sendOrReply),
      schema: {
        tags: ['chat'],
        summary: 'Send a message (idempotent by client_message_id: a retry answers 200 with the stored message)',
        params: ContextParams,
        body: SendBody,
        response: {
          200: Ok(ChatMessageOut),
          201: Ok(ChatMessageOut),
          ...problems(
            'UNAUTHENTICATED',
            'FORBIDDEN',
            'NOT_FOUND',
            'SESSION_CONTEXT_REQUIRED',
            'SESSION_NOT_ACTIVE',
            'CONTENT_BLOCKED',
            'CONFLICT',
          ),
        },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const r = await sendToSession(ctx, currentUser(req), parseContextOrThrow(req.params.context), {
        clientMessageId: b.client_message_id,
        type: b.type,
        body: b.body,
        mediaUrl: b.media_url ?? null,
        replyTo: b.reply_to_message_id ?? null,
      });
      return reply.code(r.created ? 201 : 200).send({ success: true, data: r.message });
    },
  );

  app.get(
    '/api/v2/sessions/:context/messages',
    {
      preHandler: anyone,
      ...counted('session', 'getMessages'),
      schema: {
        tags: ['chat'],
        summary: 'Messages, oldest first, by keyset: the newest page, `before` an id (older), or `after` an id (newer)',
        params: ContextParams,
        querystring: ListQuery,
        response: { 200: Ok(MessagePageOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED') },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const s = await freshSession(ctx, await readableSession(ctx.db, actor, req.params.context));
      const { page } = await listConversation(ctx, actor, sessionScope(s), parsePage(req.query));
      return { success: true as const, data: page };
    },
  );

  app.post(
    '/api/v2/sessions/:context/messages/:messageId/reactions',
    {
      preHandler: anyone,
      ...counted('session', 'addReaction'),
      schema: {
        summary: 'Add a reaction (idempotent)',
        tags: ['chat'],
        params: MessageParams,
        body: ReactionBody,
        response: {
          200: Ok(ReactionResultOut),
          201: Ok(ReactionResultOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_ACTIVE'),
        },
      },
    },
    async (req, reply) => {
      const actor = currentUser(req);
      const s = await sessionByContext(ctx.db, req.params.context);
      const messageId = toId(req.params.messageId);
      const { changed } = await setReaction(ctx, actor, sessionScope(s), messageId, req.body.reaction, true);
      return reply
        .code(changed ? 201 : 200)
        .send({ success: true, data: { message_id: messageId, reaction: req.body.reaction, user_id: actor.id, changed } });
    },
  );

  app.delete(
    '/api/v2/sessions/:context/messages/:messageId/reactions/:reaction',
    {
      preHandler: anyone,
      ...counted('session', 'removeReaction'),
      schema: {
        summary: 'Remove a reaction (idempotent)',
        tags: ['chat'],
        params: ReactionParams,
        response: {
          200: Ok(ReactionResultOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_ACTIVE'),
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const s = await sessionByContext(ctx.db, req.params.context);
      const messageId = toId(req.params.messageId);
      const { changed } = await setReaction(ctx, actor, sessionScope(s), messageId, req.params.reaction, false);
      return { success: true as const, data: { message_id: messageId, reaction: req.params.reaction, user_id: actor.id, changed } };
    },
  );

  app.post(
    '/api/v2/sessions/:context/typing',
    {
      preHandler: anyone,
      ...counted('session', (req) => ((req.body as { typing?: unknown } | undefined)?.typing === false ? 'stopTyping' : 'startTyping')),
      schema: {
        tags: ['chat'],
        summary: 'Typing indicator: ephemeral (never stored), lapses after ~8 s, throttled per user',
        params: ContextParams,
        body: TypingBody,
        response: {
          200: Ok(TypingOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_ACTIVE'),
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      // Participants only, checked before freshSession (which may advance the session's timers).
      const s = await freshSession(ctx, await participantSession(ctx.db, actor, req.params.context));
      return { success: true as const, data: setTyping(ctx, typing, actor, sessionScope(s), req.body.typing) };
    },
  );

  app.post(
    '/api/v2/sessions/:context/read',
    {
      preHandler: anyone,
      ...counted('session', 'markAsRead'),
      schema: {
        tags: ['chat'],
        summary: 'Move your read horizon forward to message_id (never backwards)',
        params: ContextParams,
        body: ReadBody,
        response: { 200: Ok(ReadOut), ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED') },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const s = await sessionByContext(ctx.db, req.params.context);
      const r = await markRead(ctx, actor, sessionScope(s), req.body.message_id);
      return {
        success: true as const,
        data: { last_read_message_id: r.last_read_message_id, unread_count: r.unread_count, moved: r.moved },
      };
    },
  );

  legacyChatRoutes(app, { typing, anyone, counted });
}

export default fp(chatPlugin, { name: 'chat', dependencies: ['context', 'auth'] });
