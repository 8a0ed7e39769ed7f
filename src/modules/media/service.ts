/**
 * Chat media: images and voice notes a participant uploads to attach to a message. The type is
 * decided by the content's magic bytes (file-type), never by the name or the declared type; each
 * kind has its own formats and size limit. Bytes live in `media_uploads` (durable, shared by every
 * API process, never pruned: they are part of the medical record).
 *
 * Media are served at a capability URL: a 256-bit random token in the path is the only thing
 * that grants reading (the mobile app renders media URLs without auth headers). Only a
 * participant of the conversation can create one; see docs/security.md for the trade-off.
 */
import { randomBytes } from 'node:crypto';
import { fileTypeFromBuffer } from 'file-type';
import type { AppContext } from '../../context.js';
import type { Executor } from '../../db/types.js';
import { DomainError, invalid } from '../../lib/errors.js';
import { assertParticipant, type Actor } from '../access.js';
import { getAppointmentOrThrow } from '../appointments/service.js';
import { contextOf, sessionByContext } from '../sessions/service.js';

export type MediaKind = 'image' | 'voice';

/** Per kind: the largest upload, and the detected MIME types accepted with their extension. */
export const MEDIA_RULES: Record<MediaKind, { maxBytes: number; types: Record<string, string> }> = {
  image: {
    maxBytes: 4 * 1024 * 1024,
    types: { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/gif': 'gif', 'image/webp': 'webp' },
  },
  voice: {
    maxBytes: 10 * 1024 * 1024,
    types: {
      'audio/x-m4a': 'm4a',
      'audio/mp4': 'm4a',
      'video/mp4': 'mp4',
      'audio/mpeg': 'mp3',
      'audio/wav': 'wav',
      'audio/x-wav': 'wav',
      'audio/aac': 'aac',
      'audio/webm': 'webm',
      'video/webm': 'webm',
    },
  },
};

const FORMATS: Record<MediaKind, string> = { image: 'JPEG, PNG, GIF or WebP', voice: 'M4A, MP3, WAV, AAC, MP4 or WebM' };

export function tooLarge(kind: MediaKind): DomainError {
  return new DomainError(
    'PAYLOAD_TOO_LARGE',
    `The ${kind === 'image' ? 'image' : 'voice message'} is too large (at most ${MEDIA_RULES[kind].maxBytes / 1024 / 1024} MB)`,
    {
      max_bytes: MEDIA_RULES[kind].maxBytes,
    },
  );
}

/** The content's real type, or 413 / 415 with a message a person understands. */
export async function detectMedia(kind: MediaKind, bytes: Buffer): Promise<{ contentType: string; extension: string }> {
  if (bytes.length === 0) throw invalid('The file is empty');
  if (bytes.length > MEDIA_RULES[kind].maxBytes) throw tooLarge(kind);
  const detected = await fileTypeFromBuffer(bytes);
  const extension = detected ? MEDIA_RULES[kind].types[detected.mime] : undefined;
  if (!detected || !extension) {
    throw new DomainError(
      'UNSUPPORTED_MEDIA_TYPE',
      `This file is not a supported ${kind === 'image' ? 'image' : 'voice message'} (use ${FORMATS[kind]})`,
      {
        detected_type: detected?.mime ?? null,
      },
    );
  }
  return { contentType: detected.mime, extension };
}

export type MediaTarget = { sessionContext: string } | { appointmentId: number };

export interface StoredMedia {
  id: number;
  token: string;
  kind: MediaKind;
  contentType: string;
  extension: string;
  size: number;
  sessionId: number | null;
  sessionContext: string | null;
  appointmentId: number | null;
}

/** Stores an upload for a conversation the actor takes part in (participants only). */
export async function storeMedia(
  ctx: AppContext,
  actor: Actor,
  input: { kind: MediaKind; bytes: Buffer; originalName: string | null; target: MediaTarget },
): Promise<StoredMedia> {
  let sessionId: number | null = null;
  let sessionContext: string | null = null;
  let appointmentId: number | null = null;
  if ('sessionContext' in input.target) {
    const s = await sessionByContext(ctx.db, input.target.sessionContext);
    assertParticipant(actor, s);
    sessionId = s.id;
    sessionContext = contextOf(s);
    appointmentId = s.appointment_id;
  } else {
    const a = await getAppointmentOrThrow(ctx.db, input.target.appointmentId);
    assertParticipant(actor, a);
    appointmentId = a.id;
    const s =
      a.session_id === null
        ? undefined
        : await ctx.db.selectFrom('sessions').select(['id', 'kind']).where('id', '=', a.session_id).executeTakeFirst();
    sessionId = s?.id ?? null;
    sessionContext = s ? contextOf(s) : null;
  }
  const type = await detectMedia(input.kind, input.bytes);
  const token = randomBytes(32).toString('base64url');
  const row = await ctx.db
    .insertInto('media_uploads')
    .values({
      token,
      uploader_id: actor.id,
      session_id: sessionId,
      appointment_id: appointmentId,
      kind: input.kind,
      content_type: type.contentType,
      extension: type.extension,
      original_name: input.originalName?.slice(0, 255) ?? null,
      size_bytes: input.bytes.length,
      bytes: input.bytes,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, token, kind: input.kind, ...type, size: input.bytes.length, sessionId, sessionContext, appointmentId };
}

/** The media behind a capability token, or undefined. */
export async function mediaByToken(db: Executor, token: string) {
  return db
    .selectFrom('media_uploads')
    .select(['content_type', 'extension', 'size_bytes', 'bytes', 'created_at'])
    .where('token', '=', token)
    .executeTakeFirst();
}

/** Absolute URL of a media token: `PUBLIC_BASE_URL`, else `https://` + the request's host. */
export function mediaUrl(ctx: AppContext, host: string, token: string): string {
  const base = (ctx.config.publicBaseUrl ?? `https://${host}`).replace(/\/+$/, '');
  return `${base}/api/v2/media/${token}`;
}
