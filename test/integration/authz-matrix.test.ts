/**
 * The authorization matrix: every route in the OpenAPI document × (anonymous, expired token,
 * wrong signature, alg:none, other patient, other doctor, admin). Path parameters name the
 * resources of one patient/doctor pair and bodies are valid, so a refusal is about who asks,
 * not what was sent. No credential problem gets past 401, and no other account reads or writes.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
let routes: { method: string; path: string }[] = [];
const params: Record<string, string> = {};
let owner: { patient: Record<string, string>; doctor: Record<string, string> };
let identities: Record<string, Record<string, string>>;

/** Routes anyone may call, and admin-only routes (checked separately). */
// Media are read by capability token (the mobile app sends no auth header for media; docs/security.md).
const PUBLIC = new Set(['GET /api/v2/plans', 'GET /api/v2/media/{token}']);

const bodies: Record<string, unknown> = {
  'POST /api/v2/appointments': {
    doctor_id: 0,
    scheduled_at: new Date(Date.now() + 7 * 86_400_000).toISOString(),
    appointment_type: 'text',
  },
  'POST /api/v2/sessions': { doctor_id: 0, modality: 'text' },
  'POST /api/v2/sessions/{context}/messages': { client_message_id: 'authz-1', type: 'text', body: 'hello' },
  'POST /api/v2/sessions/{context}/typing': { typing: true },
  'POST /api/v2/sessions/{context}/read': { message_id: 0 },
  'POST /api/v2/sessions/{context}/messages/{messageId}/reactions': { reaction: '👍' },
  'POST /api/v2/chat/{id}/messages': { message: 'hello', message_type: 'text', temp_id: 'authz-2' },
  'POST /api/v2/chat/{id}/messages/{messageId}/reactions': { reaction: '👍' },
  'POST /api/v2/chat/{id}/messages/{messageId}/reply': { message: 'hi', message_type: 'text' },
  'POST /api/v2/chat/{id}/mark-read': { message_id: 0 },
  'POST /api/v2/text-appointments/process-deduction': { appointment_id: 0, sessions_to_deduct: 1, reason: 'authz' },
};

beforeAll(async () => {
  t = await createHarness();
  const appt = await t.newAppointment({ appointment_type: 'text' });
  await t.giveCredits(appt.patient, { text: 5 });
  const start = await t.app.inject({
    method: 'POST',
    url: `/api/v2/appointments/${appt.id}/start-session`,
    headers: await t.auth(appt.patient),
  });
  if (start.statusCode >= 300) throw new Error(`start-session: ${start.body}`);
  const context = start.json().data.session_context as string;
  const msg = await t.app.inject({
    method: 'POST',
    url: `/api/v2/sessions/${context}/messages`,
    headers: await t.auth(appt.patient),
    payload: { client_message_id: 'authz-seed', type: 'text', body: 'seed' },
  });
  const messageId = String(msg.json().data?.id ?? 1);
  Object.assign(params, { id: String(appt.id), context, messageId, reaction: '👍' });
  bodies['POST /api/v2/appointments'] = { ...(bodies['POST /api/v2/appointments'] as object), doctor_id: appt.doctor.id };
  bodies['POST /api/v2/sessions'] = { doctor_id: appt.doctor.id, modality: 'text' };
  bodies['POST /api/v2/sessions/{context}/read'] = { message_id: Number(messageId) };
  bodies['POST /api/v2/chat/{id}/mark-read'] = { timestamp: new Date().toISOString() };
  bodies['POST /api/v2/text-appointments/process-deduction'] = { appointment_id: appt.id, sessions_to_deduct: 1, reason: 'manual_end' };

  owner = { patient: await t.auth(appt.patient), doctor: await t.auth(appt.doctor) };
  const stranger = await t.newPatient();
  const expired = await t.token(stranger, -60);
  const wrongKey = await new SignJWT({ role: 'admin' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(String(stranger.id))
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode('not-the-secret-not-the-secret-not-the-secret'));
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: String(stranger.id), role: 'admin', exp: 9_999_999_999 })).toString('base64url')}.`;
  identities = {
    anonymous: {},
    expired: { authorization: `Bearer ${expired}` },
    'wrong signature': { authorization: `Bearer ${wrongKey}` },
    'alg none': { authorization: `Bearer ${none}` },
    'other patient': await t.auth(stranger),
    'other doctor': await t.auth(await t.newDoctor()),
    admin: await t.auth(await t.newAdmin()),
  };
  const doc = (await t.app.inject('/docs/json')).json() as { paths: Record<string, Record<string, unknown>> };
  routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => ({ method: m.toUpperCase(), path })));
});
afterAll(async () => t?.close());

const queries: Record<string, string> = {
  'DELETE /api/v2/chat/{id}/messages/{messageId}/reactions': `?reaction=${encodeURIComponent('👍')}`,
};

const fill = (path: string) => path.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(params[name] ?? '1'));

async function send(route: { method: string; path: string }, headers: Record<string, string>) {
  const key = `${route.method} ${route.path}`;
  const body = bodies[key];
  return t.app.inject({
    method: route.method as 'GET',
    url: fill(route.path) + (queries[key] ?? ''),
    headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
}

describe('authorization matrix', () => {
  it('covers the API', () => {
    expect(routes.filter((r) => r.path.startsWith('/api/v2/')).length).toBeGreaterThan(15);
  });

  it('refuses every credential problem with 401', async () => {
    for (const route of routes.filter((r) => r.path.startsWith('/api/v2/') && !PUBLIC.has(`${r.method} ${r.path}`))) {
      for (const who of ['anonymous', 'expired', 'wrong signature', 'alg none']) {
        const res = await send(route, identities[who]!);
        expect(res.statusCode, `${who} ${route.method} ${route.path}: ${res.body}`).toBe(401);
      }
    }
  });

  it('lets no other patient or doctor read or write another account’s resources', async () => {
    const scoped = routes.filter(
      (r) => r.path.startsWith('/api/v2/') && /\{(id|context)\}/.test(r.path) && !r.path.startsWith('/api/v2/admin/'),
    );
    expect(scoped.length).toBeGreaterThan(10);
    for (const route of [...scoped, { method: 'POST', path: '/api/v2/text-appointments/process-deduction' }]) {
      for (const who of ['other patient', 'other doctor']) {
        const res = await send(route, identities[who]!);
        expect([403, 404], `${who} ${route.method} ${route.path}: ${res.statusCode} ${res.body}`).toContain(res.statusCode);
      }
    }
  });

  it('keeps admin routes for admins', async () => {
    for (const route of routes.filter((r) => r.path.startsWith('/api/v2/admin/'))) {
      for (const who of ['other patient', 'other doctor']) {
        const res = await send(route, identities[who]!);
        expect(res.statusCode, `${who} ${route.method} ${route.path}`).toBe(403);
      }
    }
  });

  it('the owners themselves are not refused (the matrix tests who asks, not what is sent)', async () => {
    const res = await send({ method: 'GET', path: '/api/v2/appointments/{id}' }, owner.patient);
    expect(res.statusCode).toBe(200);
    const s = await send({ method: 'GET', path: '/api/v2/sessions/{context}' }, owner.doctor);
    expect(s.statusCode).toBe(200);
  });
});
