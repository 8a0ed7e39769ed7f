/**
 * WebSocket support for the whole app: one `ws` server (@fastify/websocket) serves every socket
 * route — sessiongate's gateway (`/api/v2/ws`) and the original app's signalling paths. It must be
 * registered once, at the root, before any socket route: a second registration would add a second
 * `upgrade` listener to the same HTTP server and route every handshake twice.
 *
 * `protocols` is the server's preference among the sub-protocols a client offers; anything else
 * offered (a `bearer, <jwt>` pair's token, say) is never selected, so never echoed.
 */
import fp from 'fastify-plugin';
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';

export interface WebSocketSupportOptions {
  maxPayloadBytes: number;
  protocols: readonly string[];
}

async function websocketSupport(app: FastifyInstance, opts: WebSocketSupportOptions): Promise<void> {
  const log = app.ctx.log.child({ component: 'ws' });
  await app.register(websocket, {
    options: {
      maxPayload: opts.maxPayloadBytes,
      handleProtocols: (offered) => opts.protocols.find((p) => offered.has(p)) ?? false,
    },
    errorHandler: (err, socket) => {
      log.warn({ err }, 'websocket error');
      socket.terminate();
    },
  });
}

export default fp(websocketSupport, { name: 'websocket-support', dependencies: ['context'] });
