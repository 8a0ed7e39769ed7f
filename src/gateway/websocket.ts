/**
 * WebSocket support for the whole app: one `ws` server (@fastify/websocket) and one socket hub
 * (`socket-hub.ts`: access, fan-out, limits) serve every socket route — sessiongate's gateway
 * (`/api/v2/ws`) and the original app's signalling paths. It must be registered once, at the
 * root, before any socket route: a second registration would add a second `upgrade` listener to
 * the same HTTP server and route every handshake twice.
 *
 * `protocols` is the server's preference among the sub-protocols a client offers; anything else
 * offered (a `bearer, <jwt>` pair's token, say) is never selected, so never echoed.
 */
import fp from 'fastify-plugin';
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import { SocketHub, type SocketLimits } from './socket-hub.js';

export interface WebSocketSupportOptions extends Partial<SocketLimits> {
  protocols: readonly string[];
}

declare module 'fastify' {
  interface FastifyInstance {
    socketHub: SocketHub;
  }
}

async function websocketSupport(app: FastifyInstance, opts: WebSocketSupportOptions): Promise<void> {
  const log = app.ctx.log.child({ component: 'ws' });
  const { protocols, ...limits } = opts;
  const hub = new SocketHub(app.ctx, limits);
  await app.register(websocket, {
    options: {
      maxPayload: hub.limits.maxPayloadBytes,
      handleProtocols: (offered) => protocols.find((p) => offered.has(p)) ?? false,
    },
    errorHandler: (err, socket) => {
      log.warn({ err }, 'websocket error');
      socket.terminate();
    },
  });
  app.decorate('socketHub', hub);
  hub.start();
  app.addHook('onClose', async () => hub.stop());
}

export default fp(websocketSupport, { name: 'websocket-support', dependencies: ['context'] });
