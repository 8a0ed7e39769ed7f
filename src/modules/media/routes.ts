/** `GET /api/v2/media/{token}`: chat media by capability token (no auth header: the token is the grant). */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { notFound } from '../../lib/errors.js';
import { problems } from '../../lib/schemas.js';
import { mediaByToken } from './service.js';

export default async function mediaRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  app.get(
    '/api/v2/media/:token',
    {
      schema: {
        tags: ['chat'],
        summary:
          'A chat image or voice note; the unguessable token in the URL is the permission (media URLs are rendered without auth headers)',
        security: [],
        params: Type.Object({ token: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }) }, { additionalProperties: false }),
        response: { 200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }), ...problems('NOT_FOUND') },
      },
    },
    async (req, reply) => {
      const m = await mediaByToken(ctx.db, req.params.token);
      if (!m) throw notFound('Media');
      return (
        reply
          .type(m.content_type)
          .header('content-length', String(m.size_bytes))
          // Content never changes under a token; only the holder's own cache may keep it.
          .header('cache-control', 'private, max-age=31536000, immutable')
          .header('content-disposition', `inline; filename="media.${m.extension}"`)
          .header('content-security-policy', "default-src 'none'; sandbox")
          .header('referrer-policy', 'no-referrer')
          .send(Buffer.from(m.bytes))
      );
    },
  );
}
