/**
 * Fuzzed chat input never produces a 5xx: message bodies (any Unicode, lone surrogates, control
 * characters, markup and link fragments), client ids, reactions, cursors, and session-context /
 * legacy path strings, through the session routes and the guarded legacy routes. Bodies that pass
 * the content rule are stored and returned byte for byte.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { User } from '../../src/db/types.js';
import { checkBody } from '../../src/modules/chat/content.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
let patient: User;
let doctor: User;
let context: string;
let sessionId: number;
let appointmentId: number;
let preSessionAppointment: number;
let preSessionPatient: User;
let messageId: number;

beforeAll(async () => {
  t = await createHarness({ flags: { ALLOW_LEGACY_APPOINTMENT_CHAT: true } });
  const appt = await t.newAppointment({ appointment_type: 'text' });
  await t.giveCredits(appt.patient, { text: 3 });
  const started = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/start-session`, headers: await t.auth(appt.patient) });
  ({ id: sessionId, session_context: context } = started.json().data);
  patient = appt.patient;
  doctor = appt.doctor;
  appointmentId = appt.id;
  const first = await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${context}/messages`, headers: await t.auth(doctor), payload: { client_message_id: 'seed', type: 'text', body: 'seed' } });
  messageId = first.json().data.id;
  const pre = await t.newAppointment({ scheduled_at: new Date(Date.now() + 86_400_000) });
  preSessionAppointment = pre.id;
  preSessionPatient = pre.patient;
});
afterAll(async () => t?.close());

const fragments = fc.constantFrom(
  '<', '>', '</', 'script', 'img src=x onerror=alert(1)', 'a href', '<!--', '<?', 'javascript:', 'data:text/html,', 'http', '://', 'www.', '.com', '.ly/', 'mailto:',
  '10.0.0.1:80', '\n', '\r\n', '\t', '\u0000', '\u001b', '\ud800', '\udc00', '😀', '👍🏽', 'é', '中', ' ', '.', '=', 'on', 'ok', '&lt;', '%3C', '\\', '"', "'",
);
const body = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 1100 }),
  fc.string({ unit: 'grapheme', maxLength: 1100 }),
  fc.array(fragments, { maxLength: 40 }).map((xs) => xs.join('')),
  fc.array(fc.oneof(fragments, fc.string({ maxLength: 8 })), { maxLength: 30 }).map((xs) => xs.join(' ')),
);

const codePoints = (s: string) => [...s].length;
const isWellFormed = (s: string) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
const shouldStore = (s: string) => codePoints(s) <= 1000 && s.trim().length > 0 && checkBody(s).ok;

let n = 0;

describe('chat fuzz', () => {
  it('session send: any body → 201 with the exact body when the rule allows it, else 400; never 5xx', async () => {
    const headers = await t.auth(patient);
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const res = await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${context}/messages`, headers, payload: { client_message_id: `fz-${++n}`, type: 'text', body: b } });
        expect(res.statusCode, res.body).toBeLessThan(500);
        if (shouldStore(b)) {
          expect(res.statusCode, JSON.stringify(b)).toBe(201);
          expect(res.json().data.body).toBe(b);
        } else {
          expect(res.statusCode, JSON.stringify(b)).toBe(400);
          expect(['CONTENT_BLOCKED', 'VALIDATION_FAILED']).toContain(res.json().error_code);
        }
      }),
      { numRuns: 250 },
    );
  });

  it('legacy send (served by the session, and pre-session per appointment): never 5xx', async () => {
    const sessionHeaders = await t.auth(patient);
    const preHeaders = await t.auth(preSessionPatient);
    const usedTempIds = new Set<string>();
    await fc.assert(
      fc.asyncProperty(
        body,
        fc.oneof(fc.string({ unit: 'binary', maxLength: 120 }), fc.integer(), fc.constant(undefined)),
        fc.boolean(),
        async (b, tempId, pre) => {
          const res = await t.app.inject({
            method: 'POST',
            url: `/api/v2/chat/${pre ? preSessionAppointment : appointmentId}/messages`,
            headers: pre ? preHeaders : sessionHeaders,
            payload: { message: b, ...(tempId === undefined ? {} : { temp_id: tempId }) },
          });
          expect(res.statusCode, res.body).toBeLessThan(500);
          // A repeated temp_id is a retry: it answers the message first stored under it.
          const key = tempId === undefined ? null : `${pre}:${String(tempId)}`;
          if (res.statusCode === 200 && (key === null || !usedTempIds.has(key))) expect(res.json().data.message).toBe(b);
          if (res.statusCode === 200 && key !== null) usedTempIds.add(key);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('client ids, reactions, media URLs and cursors: never 5xx', async () => {
    const headers = await t.auth(doctor);
    const anyString = fc.oneof(fc.string({ unit: 'binary', maxLength: 120 }), fc.array(fragments, { maxLength: 10 }).map((x) => x.join('')));
    await fc.assert(
      fc.asyncProperty(anyString, anyString, anyString, anyString, async (cid, reaction, media, cursor) => {
        const send = await t.app.inject({
          method: 'POST',
          url: `/api/v2/sessions/${context}/messages`,
          headers,
          payload: { client_message_id: cid, type: 'image', body: 'photo', media_url: media },
        });
        expect(send.statusCode, send.body).toBeLessThan(500);
        const react = await t.app.inject({ method: 'POST', url: `/api/v2/sessions/${context}/messages/${messageId}/reactions`, headers, payload: { reaction } });
        expect(react.statusCode, react.body).toBeLessThan(500);
        if (isWellFormed(reaction)) {
          const del = await t.app.inject({ method: 'DELETE', url: `/api/v2/sessions/${context}/messages/${messageId}/reactions/${encodeURIComponent(reaction)}`, headers });
          expect(del.statusCode, del.body).toBeLessThan(500);
        }
        if (isWellFormed(cursor)) {
          const list = await t.app.inject({ url: `/api/v2/sessions/${context}/messages?before=${encodeURIComponent(cursor)}&limit=${encodeURIComponent(cursor)}`, headers });
          expect(list.statusCode, list.body).toBeLessThan(500);
          const mark = await t.app.inject({ method: 'POST', url: `/api/v2/chat/${appointmentId}/mark-read`, headers, payload: { timestamp: cursor } });
          expect(mark.statusCode, mark.body).toBeLessThan(500);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('session-context and legacy path strings: never 5xx', async () => {
    const headers = await t.auth(patient);
    const contextLike = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 80 }),
      fc.tuple(fc.constantFrom('text_session', 'call_session', 'direct_session', 'TEXT_SESSION', 'text-session', ''), fc.constantFrom(':', '_', '::', ' ', ''), fc.oneof(fc.bigInt({ min: -10n, max: 10n ** 25n }).map(String), fc.string({ maxLength: 6 }))).map(
        ([a, b, c]) => `${a}${b}${c}`,
      ),
      fc.bigInt({ min: -5n, max: 10n ** 22n }).map(String),
      fc.constant(String(sessionId)),
      fc.constant(String(appointmentId)),
    );
    await fc.assert(
      fc.asyncProperty(contextLike, async (raw) => {
        const enc = encodeURIComponent(raw);
        for (const req of [
          { method: 'GET' as const, url: `/api/v2/sessions/${enc}/messages` },
          { method: 'POST' as const, url: `/api/v2/sessions/${enc}/messages`, payload: { client_message_id: `ctx-${++n}`, type: 'text', body: 'hi' } },
          { method: 'POST' as const, url: `/api/v2/sessions/${enc}/typing`, payload: { typing: true } },
          { method: 'POST' as const, url: `/api/v2/sessions/${enc}/read`, payload: { message_id: messageId } },
          { method: 'GET' as const, url: `/api/v2/chat/${enc}/messages` },
          { method: 'POST' as const, url: `/api/v2/chat/${enc}/messages`, payload: { message: 'hi' } },
          { method: 'POST' as const, url: `/api/v2/chat/${enc}/typing/start` },
          { method: 'DELETE' as const, url: `/api/v2/chat/${enc}/messages/${messageId}/reactions?reaction=x` },
        ]) {
          const res = await t.app.inject({ ...req, headers });
          expect(res.statusCode, `${req.method} ${req.url} → ${res.body}`).toBeLessThan(500);
        }
      }),
      { numRuns: 120 },
    );
  });
});
