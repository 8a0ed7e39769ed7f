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

beforeAll(async () => {
  t = await createHarness();
  const appt = await t.newAppointment({ appointment_type: 'text' });
  await t.giveCredits(appt.patient, { text: 3 });
  const started = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/start-session`, headers: await t.auth(appt.patient) });
  const context = started.json().data?.session_context ?? 'text_session:1';
  const doc = (await t.app.inject('/docs/json')).json() as { paths: Record<string, Record<string, unknown>> };
  routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => ({ method: method.toUpperCase(), path })));
  identities = [
    { name: 'anonymous', headers: {} },
    { name: 'patient', headers: await t.auth(appt.patient) },
    { name: 'other patient', headers: await t.auth(await t.newPatient()) },
    { name: 'admin', headers: await t.auth(await t.newAdmin()) },
  ];
  pool = [String(appt.id), context, context.replace(':', '_'), 'direct_session_7', '0', '-1', '1e3', '99999999999999999999', 'text_session:abc', '%00', 'a'.repeat(300), '12abc', ' 1', 'call_session:1', '🙂'];
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
    fc.constantFrom('doctor_id', 'scheduled_at', 'appointment_type', 'body', 'type', 'client_message_id', 'message', 'message_id', 'role', 'name', 'user_id', 'plan_id', 'payment_reference', 'modality', 'reaction', 'appointment_id', 'sessions_to_deduct', 'typing', 'temp_id', 'status'),
    fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.boolean(), fc.double(), fc.array(fc.integer(), { maxLength: 3 }), fc.string({ maxLength: 2000 })),
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
            headers: { ...identity.headers, ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { 'content-type': contentType }) },
            ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { payload: contentType === 'application/json' ? (JSON.stringify(body) ?? 'null') : safeString(body) }),
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
  });
});

function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    return '[object]';
  }
}
