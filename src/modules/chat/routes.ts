/**
 * Chat routes: session chat under `/api/v2/sessions/{context}/…` (SPEC §2.6, §5) and the legacy
 * appointment-addressed routes under `/api/v2/chat/{id}/…` behind the SessionContextGuard (§3.2).
 *
 * Every request to a chat route — served, refused or blocked — counts once in
 * `chat_operations_total{operation, path}` (path "session" or "legacy").
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { invalid } from '../../lib/errors.js';
import { Ok, problems, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import type { ChatOperation } from '../guard/decision.js';
import { freshSession, participantSession, readableSession, sessionByContext } from '../sessions/service.js';
import { legacyMarkRead, legacyMessageJson, resolveLegacyChat, sendLegacy, type LegacyTarget } from './legacy.js';
import * as repo from './repository.js';
import {
  ChatMessageOut,
  ContextParams,
  LegacyListQuery,
  LegacyMarkReadBody,
  LegacyMarkReadOut,
  LegacyMessageOut,
  LegacyMessageParams,
  LegacyOptionalReactionBody,
  LegacyParams,
  LegacyReactionBody,
  LegacyReactionQuery,
  LegacyReactionResultOut,
  LegacyReplyOut,
  LegacySendBody,
  LegacyTypingBody,
  LegacyTypingOut,
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
  type LegacySendBody as LegacySendBodyT,
} from './schemas.js';
import { parseContextOrThrow, sendToSession } from './send.js';
import {
  listConversation,
  markRead,
  sessionScope,
  setReaction,
  setTyping,
  typingUsers,
  type ChatActor,
  type MessageInput,
} from './service.js';
import { TypingRegistry } from './typing.js';
import { chatSendLimit } from '../../plugins/rate-limit.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Who is typing where; shared by the HTTP routes and the WebSocket gateway. */
    chatTyping: TypingRegistry;
  }
}

type ChatPath = 'session' | 'legacy';

function parsePage(q: { before?: string; after?: string; limit?: string }) {
  return {
    before: q.before === undefined ? undefined : toId(q.before),
    after: q.after === undefined ? undefined : toId(q.after),
    limit: q.limit === undefined ? undefined : Number(q.limit),
  };
}

function legacyInput(body: LegacySendBodyT, replyTo: number | null): MessageInput {
  const cid = body.temp_id ?? body.message_id ?? null;
  return {
    clientMessageId: cid === null ? null : String(cid),
    type: body.message_type ?? 'text',
    body: body.message,
    mediaUrl: body.media_url ?? null,
    replyTo,
  };
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
  const counted = (path: ChatPath, op: ChatOperation | ((req: FastifyRequest) => ChatOperation)) => ({
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

  // ---- legacy appointment chat --------------------------------------------------------------

  app.get(
    '/api/v2/chat/:id/messages',
    {
      preHandler: anyone,
      ...counted('legacy', 'getMessages'),
      schema: {
        deprecated: true,
        tags: ['legacy chat'],
        summary: 'Legacy (guarded): messages of an appointment or session; use /api/v2/sessions/{context}/messages',
        params: LegacyParams,
        querystring: LegacyListQuery,
        response: {
          200: Ok(Type.Array(LegacyMessageOut)),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_READY'),
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const target = await resolveLegacyChat(ctx, actor, req.params.id, 'getMessages');
      const { page, reactions } = await listConversation(ctx, actor, target.scope, {
        ...parsePage(req.query),
        limit: parsePage(req.query).limit ?? 100,
      });
      return { success: true as const, data: page.messages.map((m) => legacyMessageJson(m, reactions)) };
    },
  );

  app.post(
    '/api/v2/chat/:id/messages',
    {
      preHandler: anyone,
      config: { rateLimit: chatSendLimit(app) },
      ...counted('legacy', 'sendMessage'),
      schema: {
        deprecated: true,
        tags: ['legacy chat'],
        summary: 'Legacy (guarded): send; temp_id is the idempotency key',
        params: LegacyParams,
        body: LegacySendBody,
        response: {
          200: Ok(LegacyMessageOut),
          ...problems(
            'UNAUTHENTICATED',
            'FORBIDDEN',
            'NOT_FOUND',
            'SESSION_CONTEXT_REQUIRED',
            'SESSION_NOT_READY',
            'SESSION_NOT_ACTIVE',
            'CONTENT_BLOCKED',
            'CONFLICT',
          ),
        },
      },
    },
    async (req) => {
      const r = await sendLegacy(ctx, currentUser(req), req.params.id, 'sendMessage', legacyInput(req.body, null));
      return { success: true as const, data: legacyMessageJson(r.message) };
    },
  );

  app.post(
    '/api/v2/chat/:id/messages/:messageId/reply',
    {
      preHandler: anyone,
      config: { rateLimit: chatSendLimit(app) },
      ...counted('legacy', 'replyToMessage'),
      schema: {
        summary: 'Legacy: reply to a message by appointment id (guarded)',
        deprecated: true,
        tags: ['legacy chat'],
        params: LegacyMessageParams,
        body: LegacySendBody,
        response: {
          200: LegacyReplyOut,
          ...problems(
            'UNAUTHENTICATED',
            'FORBIDDEN',
            'NOT_FOUND',
            'SESSION_CONTEXT_REQUIRED',
            'SESSION_NOT_READY',
            'SESSION_NOT_ACTIVE',
            'CONTENT_BLOCKED',
            'CONFLICT',
          ),
        },
      },
    },
    async (req) => {
      const r = await sendLegacy(ctx, currentUser(req), req.params.id, 'replyToMessage', legacyInput(req.body, toId(req.params.messageId)));
      const original = await repo.messageInScope(ctx.db, r.scope, toId(req.params.messageId));
      return {
        success: true as const,
        message: 'Reply sent successfully',
        data: {
          ...legacyMessageJson(r.message),
          reply_to_message: original?.body ?? null,
          reply_to_sender_name: original?.sender_name ?? null,
          read_by: [],
        },
      };
    },
  );

  const legacyReaction = async (actor: ChatActor, rawId: string, messageIdRaw: string, reaction: string | undefined, add: boolean) => {
    if (reaction === undefined) throw invalid('reaction is required (in the body or the query string)');
    const operation = add ? 'addReaction' : 'removeReaction';
    const target: LegacyTarget = await resolveLegacyChat(ctx, actor, rawId, operation);
    const { changed } = await setReaction(ctx, actor, target.scope, toId(messageIdRaw), reaction, add);
    const message = add
      ? changed
        ? 'Reaction added'
        : 'Reaction already present'
      : changed
        ? 'Reaction removed'
        : 'Reaction was not present';
    return {
      success: true as const,
      data: {
        success: true,
        message,
        ...(add ? { reaction: { reaction, user_id: actor.id, user_name: actor.name, timestamp: ctx.now().toISOString() } } : {}),
      },
    };
  };

  app.post(
    '/api/v2/chat/:id/messages/:messageId/reactions',
    {
      preHandler: anyone,
      ...counted('legacy', 'addReaction'),
      schema: {
        summary: 'Legacy: add a reaction by appointment id (guarded)',
        deprecated: true,
        tags: ['legacy chat'],
        params: LegacyMessageParams,
        body: LegacyReactionBody,
        response: {
          200: Ok(LegacyReactionResultOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_READY', 'SESSION_NOT_ACTIVE'),
        },
      },
    },
    async (req) => legacyReaction(currentUser(req), req.params.id, req.params.messageId, req.body.reaction, true),
  );

  app.delete(
    '/api/v2/chat/:id/messages/:messageId/reactions',
    {
      preHandler: anyone,
      ...counted('legacy', 'removeReaction'),
      schema: {
        summary: 'Legacy: remove a reaction by appointment id (guarded)',
        deprecated: true,
        tags: ['legacy chat'],
        params: LegacyMessageParams,
        querystring: LegacyReactionQuery,
        body: LegacyOptionalReactionBody,
        response: {
          200: Ok(LegacyReactionResultOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_READY', 'SESSION_NOT_ACTIVE'),
        },
      },
    },
    async (req) => legacyReaction(currentUser(req), req.params.id, req.params.messageId, req.query.reaction ?? req.body?.reaction, false),
  );

  for (const [action, operation] of [
    ['start', 'startTyping'],
    ['stop', 'stopTyping'],
  ] as const) {
    app.post(
      `/api/v2/chat/:id/typing/${action}`,
      {
        preHandler: anyone,
        ...counted('legacy', operation),
        schema: {
          summary: 'Legacy: start or stop typing by appointment id (guarded)',
          deprecated: true,
          tags: ['legacy chat'],
          params: LegacyParams,
          body: LegacyTypingBody,
          response: {
            200: Ok(LegacyTypingOut),
            ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_READY', 'SESSION_NOT_ACTIVE'),
          },
        },
      },
      async (req) => {
        const actor = currentUser(req);
        const target = await resolveLegacyChat(ctx, actor, req.params.id, operation);
        setTyping(ctx, typing, actor, target.scope, action === 'start');
        return {
          success: true as const,
          data: {
            success: true,
            message: action === 'start' ? 'Typing started' : 'Typing stopped',
            typing_users: typingUsers(typing, target.scope),
          },
        };
      },
    );
  }

  app.post(
    '/api/v2/chat/:id/mark-read',
    {
      preHandler: anyone,
      ...counted('legacy', 'markAsRead'),
      schema: {
        deprecated: true,
        tags: ['legacy chat'],
        summary: 'Legacy (guarded): mark everything (up to `timestamp`) read for the authenticated user',
        params: LegacyParams,
        body: LegacyMarkReadBody,
        response: {
          200: Ok(LegacyMarkReadOut),
          ...problems('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_READY'),
        },
      },
    },
    async (req) => {
      const actor = currentUser(req);
      const target = await resolveLegacyChat(ctx, actor, req.params.id, 'markAsRead');
      return { success: true as const, data: await legacyMarkRead(ctx, actor, target.scope, req.body?.timestamp) };
    },
  );
}

export default fp(chatPlugin, { name: 'chat', dependencies: ['context', 'auth'] });
