/**
 * Hostile input over every route in the OpenAPI document: random path parameters, query strings
 * and JSON bodies, as anonymous, a patient and an admin. Nothing may answer 5xx, every error is
 * a problem document with an error_code, and a rejected request changes no business table.
 */
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
let routes: { method: string; path: string }[] = [];
let identities: { name: string; headers: Record<string, string> }[] = [];
let pool: string[] = [];
let base: { patient: { id: number }; doctor: { id: number }; appointmentId: number; context: string };
let doc: { paths: Record<string, Record<string, any>>; components?: { schemas?: Record<string, any> } };

/**
 * The input classes that once reached a 5xx or a malformed response (docs/security.md): NUL and
 * other control characters, lone surrogates, dates outside RFC 3339's four-digit years, and
 * numeric-looking strings where ids belong.
 */
const HOSTILE_STRINGS = [
  'a\u0000b',
  '\u0000',
  'bell\u0007',
  'esc\u001b[31m',
  'del\u007f',
  '\ud800',
  'x\udfffy',
  '9999-12-31T23:59:59-14:00',
  '0001-01-01T00:00:00+14:00',
  '+275760-09-13T00:00:00Z',
  '1900-01-01T00:00:00Z',
  '0x4',
  '4e0',
  ' 4 ',
  '4.0',
  '-0',
];

beforeAll(async () => {
  t = await createHarness();
  const appt = await t.newAppointment({ appointment_type: 'text' });
  await t.giveCredits(appt.patient, { text: 3 });
  const started = await t.app.inject({
    method: 'POST',
    url: `/api/v2/appointments/${appt.id}/start-session`,
    headers: await t.auth(appt.patient),
  });
  const context = started.json().data?.session_context ?? 'text_session:1';
  doc = (await t.app.inject('/docs/json')).json() as typeof doc;
  routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => ({ method: method.toUpperCase(), path })));
  identities = [
    { name: 'anonymous', headers: {} },
    { name: 'patient', headers: await t.auth(appt.patient) },
    { name: 'other patient', headers: await t.auth(await t.newPatient()) },
    { name: 'admin', headers: await t.auth(await t.newAdmin()) },
  ];
  base = { patient: appt.patient, doctor: appt.doctor, appointmentId: appt.id, context };
  pool = [
    String(appt.id),
    context,
    context.replace(':', '_'),
    'direct_session_7',
    '0',
    '-1',
    '1e3',
    '99999999999999999999',
    'text_session:abc',
    '%00',
    'a'.repeat(300),
    '12abc',
    ' 1',
    'call_session:1',
    '🙂',
  ];
});
afterAll(async () => t?.close());

const businessCounts = () =>
  sql<Record<string, number>>`select
    (select count(*) from users)::int as users, (select count(*) from appointments)::int as appointments,
    (select count(*) from sessions)::int as sessions, (select count(*) from messages)::int as messages,
    (select count(*) from ledger_entries)::int as ledger, (select count(*) from subscriptions)::int as subscriptions,
    (select count(*) from message_reactions)::int as reactions,
    (select coalesce(sum(units_billed), 0))::int as units from sessions`
    .execute(t.ctx.db)
    .then((r) => r.rows[0]);

const jsonValue = fc.oneof(
  fc.anything({ maxDepth: 2 }),
  fc.dictionary(
    fc.constantFrom(
      'doctor_id',
      'scheduled_at',
      'appointment_type',
      'body',
      'type',
      'client_message_id',
      'message',
      'message_id',
      'role',
      'name',
      'user_id',
      'plan_id',
      'payment_reference',
      'modality',
      'reaction',
      'appointment_id',
      'sessions_to_deduct',
      'typing',
      'temp_id',
      'status',
    ),
    fc.oneof(
      fc.integer(),
      fc.string(),
      fc.constant(null),
      fc.boolean(),
      fc.double(),
      fc.array(fc.integer(), { maxLength: 3 }),
      fc.string({ maxLength: 2000 }),
      fc.constantFrom(...HOSTILE_STRINGS),
      fc.string({ unit: 'binary', maxLength: 20 }),
    ),
  ),
);

describe('fuzzed requests over every route', () => {
  it('never answer 5xx and rejected requests change nothing', async () => {
    expect(routes.length).toBeGreaterThan(10);
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 10_000 }),
        fc.nat({ max: 10_000 }),
        fc.array(fc.nat({ max: 10_000 }), { minLength: 3, maxLength: 3 }),
        jsonValue,
        fc.dictionary(fc.constantFrom('limit', 'before', 'after', 'status', 'token', 'x'), fc.string({ maxLength: 30 })),
        fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
        async (r, who, params, body, query, contentType) => {
          const route = routes[r % routes.length]!;
          let i = 0;
          const url = route.path.replace(/\{[^}]+\}/g, () => encodeURIComponent(pool[params[i++ % 3]! % pool.length]!));
          const qs = new URLSearchParams(query).toString();
          const identity = identities[who % identities.length]!;
          const before = await businessCounts();
          const res = await t.app.inject({
            method: route.method as 'GET',
            url: qs ? `${url}?${qs}` : url,
            headers: {
              ...identity.headers,
              ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { 'content-type': contentType }),
            },
            ...(route.method === 'GET' || route.method === 'DELETE'
              ? {}
              : { payload: contentType === 'application/json' ? (JSON.stringify(body) ?? 'null') : safeString(body) }),
          });
          const label = `${identity.name} ${route.method} ${url}?${qs} -> ${res.statusCode} ${res.body.slice(0, 300)}`;
          expect(res.statusCode, label).toBeLessThan(500);
          if (res.statusCode >= 400) {
            if (res.headers['content-type']?.toString().includes('json')) expect(res.json().error_code, label).toBeTruthy();
            expect(await businessCounts(), label).toEqual(before);
          }
        },
      ),
      { numRuns: 400 },
    );
  }, 300_000);
});

/** A plausible value for a body field, so a hostile value in ONE field reaches the service. */
function sampleFor(name: string, schema: any): unknown {
  const samples: Record<string, unknown> = {
    doctor_id: base.doctor.id,
    patient_id: base.patient.id,
    user_id: base.patient.id,
    appointment_id: base.appointmentId,
    scheduled_at: new Date(Date.now() + 86_400_000).toISOString(),
    appointment_type: 'text',
    modality: 'text',
    role: 'patient',
    name: 'Fuzz',
    type: 'text',
    body: 'hello',
    message: 'hello',
    reaction: '👍',
    typing: true,
    payment_reference: `fuzz-${Math.random()}`,
    client_message_id: `fuzz-${Math.random()}`,
    sessions_to_deduct: 1,
    reason: 'manual_end',
    plan_id: 1,
    message_id: 1,
  };
  if (name in samples) return samples[name];
  if (schema?.enum) return schema.enum[0];
  if (schema?.type === 'integer' || schema?.type === 'number') return 1;
  if (schema?.type === 'boolean') return true;
  return 'x';
}

/** The object schema of a JSON request body (the object branch of a union with null). */
function bodySchema(op: any): any {
  const s = op?.requestBody?.content?.['application/json']?.schema;
  if (!s) return null;
  if (s.properties) return s;
  return (s.anyOf ?? s.oneOf ?? []).find((b: any) => b.properties) ?? null;
}

describe('each hostile input class in each text field of each route', () => {
  it('is answered 4xx (never 5xx) and a rejected request changes nothing', async () => {
    let tried = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const schema = bodySchema(op);
        if (!schema) continue;
        const props = Object.entries(schema.properties as Record<string, any>);
        const valid = Object.fromEntries(props.map(([k, v]) => [k, sampleFor(k, v)]));
        const url = path.replace('{context}', encodeURIComponent(base.context)).replace(/\{[^}]+\}/g, String(base.appointmentId));
        for (const [field] of props) {
          for (const hostile of HOSTILE_STRINGS) {
            for (const identity of identities.slice(1)) {
              const before = await businessCounts();
              const res = await t.app.inject({
                method: method.toUpperCase() as 'POST',
                url,
                headers: { ...identity.headers, 'content-type': 'application/json' },
                payload: JSON.stringify({ ...valid, [field]: hostile }),
              });
              tried += 1;
              const label = `${identity.name} ${method} ${url} ${field}=${JSON.stringify(hostile)} -> ${res.statusCode} ${res.body.slice(0, 200)}`;
              expect(res.statusCode, label).toBeLessThan(500);
              if (res.statusCode >= 400) expect(await businessCounts(), label).toEqual(before);
              // Whatever was accepted reads back as RFC 3339 (four-digit years).
              if (res.statusCode < 300) expect(res.body, label).not.toMatch(/_at":"[+-]\d{6}-/);
            }
          }
        }
      }
    }
    expect(tried).toBeGreaterThan(500);
  }, 600_000);

  it('a client request id is taken only when short and plain', async () => {
    const long = await t.app.inject({ url: '/health/live', headers: { 'x-request-id': 'a'.repeat(8000) } });
    expect(String(long.headers['x-request-id']).length).toBeLessThanOrEqual(128);
    const ctl = await t.app.inject({ url: '/health/live', headers: { 'x-request-id': 'a\tb c' } });
    expect(ctl.headers['x-request-id']).not.toContain('\t');
    const plain = await t.app.inject({ url: '/health/live', headers: { 'x-request-id': 'trace-123.a:b' } });
    expect(plain.headers['x-request-id']).toBe('trace-123.a:b');
  });
});

function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    return '[object]';
  }
}
