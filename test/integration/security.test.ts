/** Security basics: headers, per-caller rate limits, body limits, and secrets kept out of logs. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type TestHarness } from '../helpers/app.js';

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness({ env: { RATE_LIMIT_CREATE_PER_MINUTE: '5', MAX_PENDING_BOOKINGS: '100' } });
});
afterAll(async () => t?.close());

describe('security', () => {
  it('sends security headers', async () => {
    const res = await t.app.inject('/health/live');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBeTruthy();
    expect(res.headers['strict-transport-security']).toBeTruthy();
    expect(res.headers['referrer-policy']).toBeTruthy();
    expect(res.headers['x-powered-by']).toBeUndefined();
  });

  it('rate-limits routes that create things, per caller', async () => {
    const doctor = await t.newDoctor();
    const patient = await t.newPatient();
    await t.giveCredits(patient, { text: 1 });
    const headers = await t.auth(patient);
    const book = (h: Record<string, string>, i: number) =>
      t.app.inject({
        method: 'POST',
        url: '/api/v2/appointments',
        headers: h,
        payload: {
          doctor_id: doctor.id,
          appointment_type: 'text',
          scheduled_at: new Date(Date.now() + 86_400_000 + i * 3_600_000).toISOString(),
        },
      });
    const codes: number[] = [];
    for (let i = 0; i < 7; i++) codes.push((await book(headers, i)).statusCode);
    expect(codes.slice(0, 5)).toEqual([201, 201, 201, 201, 201]);
    const limited = await book(headers, 99);
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error_code).toBe('RATE_LIMITED');
    expect(limited.headers['retry-after']).toBeTruthy();
    // Another caller has their own budget.
    const other = await t.newPatient();
    await t.giveCredits(other, { text: 1 });
    expect((await book(await t.auth(other), 50)).statusCode).toBe(201);
  });

  it('refuses bodies over the limit with 413', async () => {
    const admin = await t.newAdmin();
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v2/admin/users',
      headers: { ...(await t.auth(admin)), 'content-type': 'application/json' },
      payload: JSON.stringify({ role: 'patient', name: 'x'.repeat(70_000) }),
    });
    expect(res.statusCode).toBe(413);
    expect(res.json().error_code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('never writes bearer tokens or query tokens to the logs', async () => {
    const patient = await t.newPatient();
    const headers = await t.auth(patient);
    const token = headers.authorization.slice('Bearer '.length);
    await t.app.inject({ url: '/api/v2/me', headers });
    await t.app.inject({ url: `/api/v2/me?token=${token}` });
    await t.app.inject({ url: '/api/v2/appointments/12345', headers });
    const all = JSON.stringify(t.logs);
    expect(all.length).toBeGreaterThan(100);
    expect(all).not.toContain(token);
  });
});
