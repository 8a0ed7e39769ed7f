/**
 * Contract tests of the original app's chat uploads: its multipart requests
 * (`file` + `appointment_id` as a bare number), the type and size limits checked on the content,
 * the absolute `media_url` the app renders without auth headers, and who may upload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';
import { startSession } from '../integration/chat-helpers.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness({ flags: { ALLOW_LEGACY_APPOINTMENT_CHAT: true } });
});
afterAll(async () => t?.close());

const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d]),
  Buffer.from('IHDR'),
  Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 0x90, 0x77, 0x53, 0xde]),
]);
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]), Buffer.from('JFIF\0'), Buffer.alloc(64, 1)]);
/** An M4A header: an `ftyp` box with the `M4A ` brand, as the app's recorder writes. */
const M4A = Buffer.concat([
  Buffer.from([0, 0, 0, 0x20]),
  Buffer.from('ftypM4A '),
  Buffer.from([0, 0, 0, 0]),
  Buffer.from('M4A mp42isom'),
  Buffer.from([0, 0, 0, 0]),
  Buffer.alloc(256, 0),
]);

/** A multipart body as React Native's FormData sends it (the file part first or last). */
function form(fields: { file?: { name: string; type: string; bytes: Buffer }; appointment_id?: string }, fileFirst = true) {
  const boundary = `----RNFormBoundary${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [];
  const filePart = fields.file
    ? Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${fields.file.name}"\r\nContent-Type: ${fields.file.type}\r\n\r\n`,
        ),
        fields.file.bytes,
        Buffer.from('\r\n'),
      ])
    : null;
  const idPart =
    fields.appointment_id !== undefined
      ? Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="appointment_id"\r\n\r\n${fields.appointment_id}\r\n`)
      : null;
  for (const p of fileFirst ? [filePart, idPart] : [idPart, filePart]) if (p) parts.push(p);
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

async function upload(user: User, kind: 'chat-image' | 'voice-message', fields: Parameters<typeof form>[0], fileFirst = true) {
  const f = form(fields, fileFirst);
  return t.app.inject({
    method: 'POST',
    url: `/api/upload/${kind}`,
    headers: { ...(await t.auth(user)), 'content-type': f.contentType },
    payload: f.payload,
  });
}

function expectFailure(res: { statusCode: number; json(): unknown }, status: number) {
  expect(res.statusCode, JSON.stringify(res.json())).toBe(status);
  const body = res.json() as Record<string, unknown>;
  expect(body['success']).toBe(false);
  expect(typeof body['message']).toBe('string');
  return body as { message: string; error_code: string };
}

/** Fetches a media URL the way the app's <Image>/audio player does: no Authorization header. */
const fetchMedia = (url: string) => t.app.inject({ method: 'GET', url: new URL(url).pathname });

async function instantTextSession() {
  const patient = await t.newPatient();
  const doctor = await t.newDoctor();
  await t.giveCredits(patient, { text: 2 });
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/text-sessions/start',
    headers: await t.auth(patient),
    payload: { doctor_id: doctor.id },
  });
  return { patient, doctor, id: res.json().data.session_id as number };
}

describe('POST /api/upload/chat-image and /api/upload/voice-message', () => {
  it('an image for a text session (bare session id): data.media_url is absolute and serves the bytes without auth', async () => {
    const s = await instantTextSession();
    const res = await upload(s.patient, 'chat-image', {
      file: { name: `image_${Date.now()}_ab.jpg`, type: 'image/jpeg', bytes: PNG },
      appointment_id: String(s.id),
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const d = res.json().data;
    expect(res.json().success).toBe(true);
    expect(d.media_url).toMatch(/^https:\/\/[^/]+\/api\/v2\/media\/[A-Za-z0-9_-]{43}$/);
    expect(d).toMatchObject({
      type: 'image',
      extension: 'png',
      content_type: 'image/png',
      size: PNG.length,
      appointment_id: s.id,
      session_context: `text_session:${s.id}`,
    });
    // Checked on the content: the declared image/jpeg of a PNG does not matter.
    const media = await fetchMedia(d.media_url);
    expect(media.statusCode).toBe(200);
    expect(media.headers['content-type']).toBe('image/png');
    expect(media.headers['x-content-type-options']).toBe('nosniff');
    expect(media.rawPayload.equals(PNG)).toBe(true);
    // The token is the permission: it never reaches the logs.
    const token = (d.media_url as string).split('/').pop()!;
    expect(JSON.stringify(t.logs)).not.toContain(token);
    expect(JSON.stringify(t.logs)).toContain('/api/v2/media/[redacted]');
    const stored = await t.ctx.db.selectFrom('media_uploads').selectAll().where('session_id', '=', s.id).execute();
    expect(stored).toHaveLength(1);
    expect(stored[0]!.uploader_id).toBe(s.patient.id);

    // The app then sends the message carrying the URL.
    const msg = await t.app.inject({
      method: 'POST',
      url: `/api/chat/text_session_${s.id}/messages`,
      headers: await t.auth(s.patient),
      payload: { id: 'msg_1', message: '🖼️ Image', message_type: 'image', media_url: d.media_url, temp_id: 'img-1' },
    });
    expect(msg.statusCode, msg.body).toBe(200);
    expect(msg.json().data.media_url).toBe(d.media_url);
  });

  it('a voice note for an appointment (field order either way), with the session the appointment has', async () => {
    const s = await startSession(t);
    for (const fileFirst of [true, false]) {
      const res = await upload(
        s.doctor,
        'voice-message',
        { file: { name: 'voice_1_x.m4a', type: 'audio/mp4', bytes: M4A }, appointment_id: String(s.appointmentId) },
        fileFirst,
      );
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().data).toMatchObject({
        type: 'voice',
        extension: 'm4a',
        appointment_id: s.appointmentId,
        session_context: s.context,
      });
      expect(typeof res.json().data.url).toBe('string');
      const media = await fetchMedia(res.json().data.media_url);
      expect(media.statusCode).toBe(200);
      expect(media.rawPayload.equals(M4A)).toBe(true);
    }
  });

  it('type and size are checked on the content, with messages the app shows', async () => {
    const s = await instantTextSession();
    const id = String(s.id);
    const fake = expectFailure(
      await upload(s.patient, 'chat-image', {
        file: { name: 'x.jpg', type: 'image/jpeg', bytes: Buffer.from('<html>not an image</html>') },
        appointment_id: id,
      }),
      415,
    );
    expect(fake.message).toMatch(/not a supported image/);
    expectFailure(
      await upload(s.patient, 'voice-message', { file: { name: 'v.m4a', type: 'audio/mp4', bytes: JPEG }, appointment_id: id }),
      415,
    );
    const big = Buffer.concat([PNG, Buffer.alloc(4 * 1024 * 1024, 0)]);
    const tooBig = expectFailure(
      await upload(s.patient, 'chat-image', { file: { name: 'big.png', type: 'image/png', bytes: big }, appointment_id: id }),
      413,
    );
    expect(tooBig.message).toMatch(/too large/);
    expectFailure(
      await upload(s.patient, 'chat-image', { file: { name: 'x.png', type: 'image/png', bytes: Buffer.alloc(0) }, appointment_id: id }),
      400,
    );
    expectFailure(await upload(s.patient, 'chat-image', { appointment_id: id }), 400);
    expectFailure(await upload(s.patient, 'chat-image', { file: { name: 'x.png', type: 'image/png', bytes: PNG } }), 400);
    const json = await t.app.inject({
      method: 'POST',
      url: '/api/upload/chat-image',
      headers: await t.auth(s.patient),
      payload: { appointment_id: id },
    });
    expectFailure(json, 400);
    expect(await t.ctx.db.selectFrom('media_uploads').select('id').where('session_id', '=', s.id).execute()).toHaveLength(0);
  });

  it('only participants upload; unknown ids, NaN and unknown tokens are clear 4xx; no auth is 401', async () => {
    const s = await instantTextSession();
    const file = { name: 'i.png', type: 'image/png', bytes: PNG };
    expectFailure(await upload(await t.newPatient(), 'chat-image', { file, appointment_id: `text_session_${s.id}` }), 403);
    expectFailure(await upload(s.patient, 'chat-image', { file, appointment_id: '99999999' }), 404);
    expectFailure(await upload(s.patient, 'chat-image', { file, appointment_id: 'NaN' }), 404);
    const f = form({ file, appointment_id: String(s.id) });
    const anon = await t.app.inject({
      method: 'POST',
      url: '/api/upload/chat-image',
      headers: { 'content-type': f.contentType },
      payload: f.payload,
    });
    expectFailure(anon, 401);
    expectFailure(await fetchMedia(`https://x/api/v2/media/${'A'.repeat(43)}`), 404);
    expectFailure(await fetchMedia('https://x/api/v2/media/short'), 400);
  });
});
