/**
 * The legacy appointment-addressed chat routes, `/api/v2/chat/{id}/…`, behind the
 * SessionContextGuard (`legacy.ts`): registered by the chat plugin (`routes.ts`), whose typing
 * registry and operation counters they share.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { invalid } from '../../lib/errors.js';
import { Ok, problems, toId } from '../../lib/schemas.js';
import { currentUser } from '../../plugins/auth.js';
import { chatSendLimit } from '../../plugins/rate-limit.js';
import type { ChatOperation } from '../guard/decision.js';
import { legacyMarkRead, legacyMessageJson, resolveLegacyChat, sendLegacy, type LegacyTarget } from './legacy.js';
import * as repo from './repository.js';
import {
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
  type LegacySendBody as LegacySendBodyT,
} from './schemas.js';
import { listConversation, setReaction, setTyping, typingUsers, type ChatActor, type MessageInput } from './service.js';
import type { TypingRegistry } from './typing.js';

export type ChatPath = 'session' | 'legacy';

/** The route-level hook counting every request of a chat route (see `routes.ts`). */
export type Counted = (
  path: ChatPath,
  op: ChatOperation | ((req: FastifyRequest) => ChatOperation),
) => { onSend: (req: FastifyRequest, reply: FastifyReply, payload: unknown) => Promise<unknown> };

export function parsePage(q: { before?: string; after?: string; limit?: string }) {
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

/** What a legacy send or reply can refuse: the guard, the access gate, the content rule, a state. */
const SEND_PROBLEMS = problems(
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'SESSION_CONTEXT_REQUIRED',
  'SESSION_NOT_READY',
  'SESSION_NOT_ACTIVE',
  'CONTENT_BLOCKED',
  'CONFLICT',
);

export function legacyChatRoutes(
  fastify: FastifyInstance,
  kit: { typing: TypingRegistry; anyone: preHandlerAsyncHookHandler; counted: Counted },
): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  const { typing, anyone, counted } = kit;

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
          ...SEND_PROBLEMS,
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
          ...SEND_PROBLEMS,
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
