/**
 * The OpenAPI document a client team builds from (`/docs/json`): every operation has a summary, a
 * described success response and its error responses with the `error_code` values it can answer;
 * the legacy, appointment-keyed operations are deprecated and list the guard's codes; `/health/*`
 * and `/metrics` are documented. That every answered code is listed is checked by every harness
 * test: `sendProblem` warns on an undocumented code and `close()` fails the file.
 */
import { Type } from '@sinclair/typebox';
import Fastify from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conflict, notFound } from '../../src/lib/errors.js';
import { problems } from '../../src/lib/schemas.js';
import errorsPlugin, { UNDOCUMENTED_ERROR_CODE } from '../../src/plugins/errors.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

type Operation = {
  summary?: string;
  deprecated?: boolean;
  tags?: string[];
  responses: Record<
    string,
    { description: string; content?: Record<string, { schema: { properties?: { error_code?: { enum?: string[] } } } }> }
  >;
};

let t: TestHarness;
let operations: [string, Operation][];
beforeAll(async () => {
  t = await createHarness();
  const doc = (await t.app.inject('/docs/json')).json() as { paths: Record<string, Record<string, Operation>> };
  operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => [`${method.toUpperCase()} ${path}`, op] as [string, Operation]),
  );
});
afterAll(async () => t?.close());

const codesOf = (op: Operation) =>
  Object.entries(op.responses)
    .filter(([status]) => Number(status) >= 400)
    .flatMap(([, r]) => r.content?.['application/json']?.schema.properties?.error_code?.enum ?? []);

describe('the API document', () => {
  it('gives every operation a summary and a described success response', () => {
    expect(operations.length).toBeGreaterThan(30);
    for (const [name, op] of operations) {
      expect(op.summary, name).toMatch(/\w/);
      for (const [status, r] of Object.entries(op.responses)) expect(r.description, `${name} ${status}`).not.toBe('Default Response');
    }
  });

  it('lists the error codes of every /api/v2 operation; authenticated ones include UNAUTHENTICATED', () => {
    for (const [name, op] of operations.filter(([n]) => n.includes('/api/v2/'))) {
      const codes = codesOf(op);
      expect(codes, name).toContain('VALIDATION_FAILED');
      expect(codes, name).toContain('SERVICE_UNAVAILABLE');
      // The plans and media capability URLs take no token.
      if (!/\/api\/v2\/(plans$|media\/)/.test(name)) expect(codes, name).toContain('UNAUTHENTICATED');
    }
  });

  it('marks the legacy appointment-keyed operations deprecated, with the guard codes', () => {
    const legacy = operations.filter(([n]) =>
      /\/api\/v2\/(chat\/|appointments\/\{id\}\/(end-session|process-payment)|text-appointments\/)/.test(n),
    );
    expect(legacy.length).toBe(11); // the eight chat operations and the three billing endpoints
    for (const [name, op] of legacy) {
      expect(op.deprecated, name).toBe(true);
      const codes = codesOf(op);
      if (name.includes('/chat/')) expect(codes, name).toEqual(expect.arrayContaining(['SESSION_CONTEXT_REQUIRED', 'SESSION_NOT_READY']));
      else expect(codes, name).toContain('SESSION_BILLING_REQUIRED');
    }
  });

  it('documents the health and metrics endpoints', () => {
    const names = operations.map(([n]) => n);
    expect(names).toEqual(expect.arrayContaining(['GET /health/live', 'GET /health/ready', 'GET /metrics']));
  });
});

describe('an answered code the document does not list', () => {
  it('is logged as undocumented by the one error handler (which fails the harness)', async () => {
    const logs: Record<string, unknown>[] = [];
    const app = Fastify({
      loggerInstance: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) }),
    });
    await app.register(errorsPlugin);
    app.get('/documented', { schema: { response: { 200: Type.Object({}), ...problems('NOT_FOUND') } } }, async () => {
      throw notFound('Thing');
    });
    app.get('/undocumented', { schema: { response: { 200: Type.Object({}), ...problems('NOT_FOUND') } } }, async () => {
      throw conflict('Not listed');
    });
    expect((await app.inject('/documented')).json()).toMatchObject({ error_code: 'NOT_FOUND' });
    expect(logs.some((l) => l['msg'] === UNDOCUMENTED_ERROR_CODE)).toBe(false);
    expect((await app.inject('/undocumented')).json()).toMatchObject({ error_code: 'CONFLICT' });
    expect(logs.filter((l) => l['msg'] === UNDOCUMENTED_ERROR_CODE)).toEqual([
      expect.objectContaining({ error_code: 'CONFLICT', route: '/undocumented', method: 'GET' }),
    ]);
    await app.close();
  });
});
