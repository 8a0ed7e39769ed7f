/**
 * Uploads of chat images and voice notes: multipart `file` + `appointment_id`.
 *
 * `appointment_id` is whatever the chat's room number is — the appointment id, or the text
 * session id for `text_session_N` chats — and is resolved by the same rule as `/chat/{id}`
 * (ids.ts). Storage, the participant check and the type and size rules (on the content's magic
 * bytes) are the core media module's; the answer's `media_url` is an absolute capability URL the
 * app renders without auth headers.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { DomainError, invalid } from '../../lib/errors.js';
import { currentUser } from '../../plugins/auth.js';
import { MEDIA_RULES, mediaUrl, storeMedia, tooLarge, type MediaKind } from '../../modules/media/service.js';
import { humanErrors, originalProblems } from './human.js';
import { resolveChatTarget } from './ids.js';
import { Envelope, OPEN, original } from './shapes.js';

const Uploaded = Type.Object(
  {
    media_url: Type.String(),
    url: Type.String(),
    name: Type.String(),
    size: Type.Integer(),
    type: Type.String(),
    extension: Type.String(),
    content_type: Type.String(),
    appointment_id: Type.Integer(),
    session_context: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: true },
);

/** Reads the one file and the `appointment_id` field, in whichever order the client sent them. */
async function readForm(req: FastifyRequest, kind: MediaKind): Promise<{ bytes: Buffer; filename: string | null; appointmentId: string }> {
  if (!req.isMultipart()) throw invalid('Send the file as multipart/form-data with the fields "file" and "appointment_id"');
  let bytes: Buffer | null = null;
  let filename: string | null = null;
  let appointmentId: string | null = null;
  try {
    for await (const part of req.parts({ limits: { fileSize: MEDIA_RULES[kind].maxBytes, files: 1, fields: 10, fieldSize: 1024 } })) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file') {
          await part.toBuffer();
          continue;
        }
        bytes = await part.toBuffer();
        filename = part.filename || null;
      } else if (part.fieldname === 'appointment_id') {
        appointmentId = String(part.value);
      }
    }
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(kind);
    if (code?.startsWith('FST_')) throw invalid('The upload could not be read; please try again');
    throw err;
  }
  if (!bytes) throw invalid('The upload has no "file"');
  if (!appointmentId) throw invalid('The upload has no "appointment_id"');
  return { bytes, filename, appointmentId };
}

export default async function uploadsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { ctx } = app;
  humanErrors(app);
  // Multipart only inside this plugin (the uploads); everywhere else a JSON body is required.
  await app.register(multipart, { limits: { fileSize: MEDIA_RULES.voice.maxBytes, files: 1 } });

  for (const [path, kind] of [
    ['/api/upload/chat-image', 'image'],
    ['/api/upload/voice-message', 'voice'],
  ] as const) {
    app.post(
      path,
      {
        preHandler: app.auth(),
        schema: {
          ...original(
            kind === 'image'
              ? 'Upload a chat image (multipart file + appointment_id; JPEG/PNG/GIF/WebP ≤ 4 MB, checked on the content)'
              : 'Upload a voice note (multipart file + appointment_id; M4A/MP3/WAV/AAC/MP4/WebM ≤ 10 MB, checked on the content)',
          ),
          consumes: ['multipart/form-data'],
          response: { 201: Envelope(Uploaded, OPEN), ...originalProblems },
        },
      },
      async (req, reply) => {
        const actor = currentUser(req);
        const form = await readForm(req, kind);
        const target = await resolveChatTarget(ctx, actor, form.appointmentId);
        if (target.type === 'direct') {
          throw new DomainError('SESSION_CONTEXT_REQUIRED', 'Media can only be sent in a consultation chat', {
            appointment_id: form.appointmentId,
          });
        }
        const stored = await storeMedia(ctx, actor, {
          kind,
          bytes: form.bytes,
          originalName: form.filename,
          target: target.type === 'appointment' ? { appointmentId: target.id } : { sessionContext: target.core },
        });
        const url = mediaUrl(ctx, req.host, stored.token);
        return reply.code(201).send({
          success: true,
          message: kind === 'image' ? 'Image uploaded' : 'Voice message uploaded',
          data: {
            media_url: url,
            url,
            name: `${kind}_${stored.id}.${stored.extension}`,
            size: stored.size,
            type: kind,
            extension: stored.extension,
            content_type: stored.contentType,
            appointment_id: target.id,
            session_context: stored.sessionContext,
          },
        });
      },
    );
  }
}
