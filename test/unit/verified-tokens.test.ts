import { describe, expect, it } from 'vitest';
import { createVerifier, signToken, type TokenVerifier } from '../../src/lib/auth.js';
import { rememberingVerifier } from '../../src/lib/verified-tokens.js';

const SECRET = 'verified-tokens-test-secret-0123456789abcdef';

/** The real HS256 verifier, counting how often it is asked. */
function countingVerifier(): TokenVerifier & { calls: number } {
  const inner = createVerifier({ secret: SECRET, jwksUrl: null });
  const counted = {
    calls: 0,
    async verify(token: string) {
      counted.calls += 1;
      return inner.verify(token);
    },
  };
  return counted;
}

describe('rememberingVerifier', () => {
  it('checks a token once and serves the same claims until the entry ages out (60 s)', async () => {
    let now = Date.now();
    const inner = countingVerifier();
    const verifier = rememberingVerifier(inner, () => now);
    const token = await signToken(SECRET, { sub: 7, role: 'patient' }, 3600);

    expect(await verifier.verify(token)).toEqual({ sub: 7, role: 'patient' });
    expect(await verifier.verify(token)).toEqual({ sub: 7, role: 'patient' });
    expect(inner.calls).toBe(1);

    now += 59_000;
    await verifier.verify(token);
    expect(inner.calls).toBe(1);
    now += 2_000;
    expect(await verifier.verify(token)).toEqual({ sub: 7, role: 'patient' });
    expect(inner.calls).toBe(2);
  });

  it('never serves a token past its own expiry', async () => {
    let now = Date.now();
    const inner = countingVerifier();
    const verifier = rememberingVerifier(inner, () => now);
    const token = await signToken(SECRET, { sub: 3, role: 'doctor' }, 5);
    await verifier.verify(token);
    now += 6_000;
    await verifier.verify(token);
    expect(inner.calls).toBe(2);
  });

  it('never remembers a failure', async () => {
    const inner = countingVerifier();
    const verifier = rememberingVerifier(inner);
    const forged = await signToken('another-secret-that-is-long-enough-0123456789', { sub: 1, role: 'admin' });
    expect(await verifier.verify(forged)).toBeNull();
    expect(await verifier.verify(forged)).toBeNull();
    expect(await verifier.verify('not.a.jwt')).toBeNull();
    expect(inner.calls).toBe(3);
  });

  it('tells tokens apart by their whole text', async () => {
    const inner = countingVerifier();
    const verifier = rememberingVerifier(inner);
    const a = await signToken(SECRET, { sub: 1, role: 'patient' });
    const b = await signToken(SECRET, { sub: 2, role: 'doctor' });
    expect(await verifier.verify(a)).toEqual({ sub: 1, role: 'patient' });
    expect(await verifier.verify(b)).toEqual({ sub: 2, role: 'doctor' });
    // A tampered signature is a different text: checked, and refused.
    expect(await verifier.verify(`${a.slice(0, -2)}xx`)).toBeNull();
    expect(inner.calls).toBe(3);
  });
});
