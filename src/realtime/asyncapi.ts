/**
 * The WebSocket protocol of `/api/v2/ws` as an AsyncAPI 3.0 document, served at
 * `/docs/asyncapi.json` beside the OpenAPI document. It is generated from the schemas the gateway
 * validates client messages with and the schemas of the server's events and control frames
 * (events.ts), so it cannot drift from what the socket speaks.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type TSchema } from '@sinclair/typebox';
import { ClientMessageSchema, ControlFrameSchemas, ServerEventSchemas } from './events.js';

const CHANNEL = 'session-events';

/** A message object per frame type, and the operations that send or receive them. */
export function asyncApiDocument(version: string) {
  const messages: Record<string, { name: string; title: string; summary?: string; payload: TSchema }> = {};
  for (const [type, payload] of Object.entries(ServerEventSchemas)) {
    messages[`event.${type}`] = {
      name: type,
      title: `Event ${type}`,
      summary: 'Delivered to the connections subscribed to its session, or to the users it is addressed to.',
      payload: Type.Object({ type: Type.Literal(type), data: payload }),
    };
  }
  for (const [type, payload] of Object.entries(ControlFrameSchemas))
    messages[`control.${type}`] = { name: type, title: `Control frame ${type}`, payload };
  for (const variant of ClientMessageSchema.anyOf) {
    const type = String((variant.properties.type as { const: string }).const);
    messages[`client.${type}`] = {
      name: type,
      title: `Client message ${type}`,
      summary: 'May carry a `ref` that the answer echoes.',
      payload: variant,
    };
  }
  const refs = (prefix: string) =>
    Object.keys(messages)
      .filter((k) => k.startsWith(prefix))
      .map((k) => ({ $ref: `#/channels/${CHANNEL}/messages/${k}` }));
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'sessiongate WebSocket',
      version,
      description:
        'Real-time events of the sessions a client participates in. Authenticate on connect with `Sec-WebSocket-Protocol: bearer, <jwt>` ' +
        '(the server answers `bearer`) or `?token=<jwt>`; subscribe to sessions by context; the server sends `ready` first and a ping every ' +
        'heartbeat. Frames are JSON objects with a `type`. After the server lost its event bus it sends `resync`: re-read what you show.',
    },
    servers: { local: { host: '127.0.0.1:3000', protocol: 'ws', pathname: '/api/v2/ws' } },
    channels: { [CHANNEL]: { address: '/api/v2/ws', messages } },
    operations: {
      receiveEvents: {
        action: 'receive',
        channel: { $ref: `#/channels/${CHANNEL}` },
        summary: 'Events of subscribed sessions',
        messages: refs('event.'),
      },
      receiveControl: {
        action: 'receive',
        channel: { $ref: `#/channels/${CHANNEL}` },
        summary: 'Answers to client messages',
        messages: refs('control.'),
      },
      sendClientMessages: {
        action: 'send',
        channel: { $ref: `#/channels/${CHANNEL}` },
        summary: 'Subscribe, unsubscribe, typing, call signals, ping',
        messages: refs('client.'),
      },
    },
  };
}

export default async function asyncApiRoute(app: FastifyInstance) {
  const doc = asyncApiDocument('0.1.0');
  app.get(
    '/docs/asyncapi.json',
    {
      schema: {
        summary: 'The WebSocket protocol as an AsyncAPI 3.0 document',
        tags: ['operations'],
        security: [],
        response: { 200: { type: 'object', additionalProperties: true, description: 'AsyncAPI 3.0 document' } },
      },
    },
    async () => doc,
  );
}
