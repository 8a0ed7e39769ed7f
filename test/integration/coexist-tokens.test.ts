/**
 * Coexistence with the existing backend, tokens: a token shaped exactly like the ones the existing
 * Laravel login (tymon/jwt-auth, HS256 with the shared JWT_SECRET) issues authenticates against the
 * real app; issuer, audience, algorithm, time claims and the subject's spelling are enforced; and
 * JWKS mode verifies against a real JWKS HTTP server with its issuer and audience checks.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload, type CryptoKey } from 'jose';
import { ConfigError, loadConfig } from '../../src/config/env.js';
import type { User } from '../../src/db/types.js';
import { createHarness, TEST_JWT_SECRET, type TestHarness } from '../helpers/app.js';

const LOGIN_URL = 'https://api.docavailable.test/api/login';
const REGISTER_URL = 'https://api.docavailable.test/api/register';
const secretKey = new TextEncoder().encode(TEST_JWT_SECRET);
const nowS = () => Math.floor(Date.now() / 1000);

/**
 * The claims the Laravel login issues: tymon's required claims (iss = the issuing URL, iat, exp,
 * nbf, sub as a string, jti), its `prv` (hash of the user model class) and the User model's
 * getJWTCustomClaims (user_type, email, display_name). No `role`.
 */
function laravelClaims(user: Pick<User, 'id' | 'role' | 'name'>, over: Record<string, unknown> = {}): JWTPayload {
  const t = nowS();
  return {
    iss: LOGIN_URL,
    iat: t,
    exp: t + 3600,
    nbf: t,
    jti: randomBytes(8).toString('hex'),
    sub: String(user.id),
    prv: '23bd5c8949f600adb39e701c400872db7a5976f7',
    user_type: user.role,
    email: `user${user.id}@example.test`,
    display_name: user.name,
    ...over,
  };
}

async function hs(payload: JWTPayload, alg = 'HS256', key: Uint8Array = secretKey): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ typ: 'JWT', alg }).sign(key);
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('HS256 with the shared secret: the existing login’s tokens', () => {
  let t: TestHarness;
  let patient: User;
  beforeAll(async () => {
    t = await createHarness({ env: { JWT_ISSUER: `${LOGIN_URL}, ${REGISTER_URL}` } });
    patient = await t.newPatient({ name: 'Ada Banda' });
  });
  afterAll(async () => t?.close());

  const me = (token: string) => t.app.inject({ url: '/api/v2/me', headers: bearer(token) });

  it('accepts a token shaped exactly like the Laravel login’s; the role comes from the users table', async () => {
    const res = await me(await hs(laravelClaims(patient)));
    expect(res.statusCode).toBe(200);
    expect(res.json().data).toMatchObject({ id: patient.id, role: 'patient', name: 'Ada Banda' });
    // Either configured issuer is accepted (register issues tokens too, with its own URL).
    expect((await me(await hs(laravelClaims(patient, { iss: REGISTER_URL })))).statusCode).toBe(200);
    // An integer `sub` (older lcobucci builds) is the same user.
    expect((await me(await hs(laravelClaims(patient, { sub: patient.id })))).statusCode).toBe(200);
  });

  it('authenticates the hot routes (token half only) the same way', async () => {
    const appt = await t.newAppointment({ patient });
    const res = await t.app.inject({ url: `/api/v2/appointments/${appt.id}/session`, headers: bearer(await hs(laravelClaims(patient))) });
    expect(res.statusCode).toBe(200);
  });

  it('lets the stored role decide: a role claim grants nothing the users table does not', async () => {
    const token = await hs(laravelClaims(patient, { role: 'admin', user_type: 'admin' }));
    expect((await me(token)).json().data.role).toBe('patient');
    const adminRoute = await t.app.inject({ url: '/api/v2/admin/flags', headers: bearer(token) });
    expect(adminRoute.statusCode).toBe(403);
    // A role claim that is not a role at all is a malformed token.
    expect((await me(await hs(laravelClaims(patient, { role: 'superuser' })))).statusCode).toBe(401);
  });

  it.each([
    ['another issuer', { iss: 'https://evil.test/api/login' }],
    ['no issuer', { iss: undefined }],
    ['expired', { exp: nowS() - 120, iat: nowS() - 3720, nbf: nowS() - 3720 }],
    ['not yet valid (nbf)', { nbf: nowS() + 600 }],
    ['issued in the future (iat)', { iat: nowS() + 600 }],
    ['no exp', { exp: undefined }],
    ['sub "0x4"-style hex', { sub: 'HEX' }],
    ['sub with exponent', { sub: 'EXP' }],
    ['sub padded', { sub: 'PAD' }],
    ['sub decimal', { sub: 'DEC' }],
    ['sub with a leading zero', { sub: 'ZERO' }],
    ['sub 0', { sub: '0' }],
    ['sub negative', { sub: -1 }],
    ['sub fractional number', { sub: 1.5 }],
  ])('refuses a token with %s (401)', async (_label, over) => {
    const spell: Record<string, string> = {
      HEX: `0x${patient.id.toString(16)}`,
      EXP: `${patient.id}e0`,
      PAD: ` ${patient.id} `,
      DEC: `${patient.id}.0`,
      ZERO: `0${patient.id}`,
    };
    const o = { ...over } as Record<string, unknown>;
    if (typeof o['sub'] === 'string' && spell[o['sub']]) o['sub'] = spell[o['sub']];
    const claims = laravelClaims(patient, o);
    for (const [k, v] of Object.entries(o)) if (v === undefined) delete claims[k];
    const res = await me(await hs(claims));
    expect(res.statusCode).toBe(401);
    expect(res.json().error_code).toBe('UNAUTHENTICATED');
  });

  it('accepts only HS256: HS384/HS512 with the same secret and alg "none" are refused', async () => {
    expect((await me(await hs(laravelClaims(patient), 'HS384'))).statusCode).toBe(401);
    expect((await me(await hs(laravelClaims(patient), 'HS512'))).statusCode).toBe(401);
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const unsigned = `${enc({ typ: 'JWT', alg: 'none' })}.${enc(laravelClaims(patient))}.`;
    expect((await me(unsigned)).statusCode).toBe(401);
    // Signed with another secret.
    expect((await me(await hs(laravelClaims(patient), 'HS256', new TextEncoder().encode('x'.repeat(48))))).statusCode).toBe(401);
  });

  it('tolerates a little clock skew between the two backends (30 s)', async () => {
    const res = await me(await hs(laravelClaims(patient, { iat: nowS() + 5, nbf: nowS() + 5 })));
    expect(res.statusCode).toBe(200);
  });
});

describe('HS256 with JWT_AUDIENCE', () => {
  let t: TestHarness;
  beforeAll(async () => {
    t = await createHarness({ env: { JWT_AUDIENCE: 'sessiongate' } });
  });
  afterAll(async () => t?.close());

  it('requires the audience when one is configured', async () => {
    const u = await t.newDoctor();
    const me = async (over: Record<string, unknown>) =>
      (await t.app.inject({ url: '/api/v2/me', headers: bearer(await hs(laravelClaims(u, over))) })).statusCode;
    expect(await me({ aud: 'sessiongate' })).toBe(200);
    expect(await me({ aud: ['other', 'sessiongate'] })).toBe(200);
    expect(await me({ aud: 'other-app' })).toBe(401);
    expect(await me({})).toBe(401);
  });
});

describe('JWKS mode against a real JWKS server', () => {
  let t: TestHarness;
  let server: Server;
  let privateKey: CryptoKey;
  let strangerKey: CryptoKey;
  let jwksUrl: string;
  let jwksHits = 0;
  const ISSUER = 'https://id.example.test/';
  const AUDIENCE = 'sessiongate-api';

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    strangerKey = (await generateKeyPair('RS256')).privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    server = createServer((req, res) => {
      jwksHits += 1;
      if (req.url !== '/.well-known/jwks.json') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
    t = await createHarness({ env: { JWT_SECRET: '', JWKS_URL: jwksUrl, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE } });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  const rs = (payload: JWTPayload, key: CryptoKey = privateKey, kid = 'k1') =>
    new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid }).sign(key);
  const claims = (u: User, over: Record<string, unknown> = {}): JWTPayload => {
    const c: Record<string, unknown> = { iss: ISSUER, aud: AUDIENCE, sub: String(u.id), iat: nowS(), exp: nowS() + 600, ...over };
    for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
    return c;
  };
  const me = async (token: string) => (await t.app.inject({ url: '/api/v2/me', headers: bearer(token) })).statusCode;

  it('verifies a token signed by a key of the JWKS, with the right issuer and audience', async () => {
    const u = await t.newPatient();
    expect(await me(await rs(claims(u)))).toBe(200);
    expect(jwksHits).toBeGreaterThan(0);
  });

  it('refuses a wrong or missing issuer or audience, a key not in the set, and HS256', async () => {
    const u = await t.newPatient();
    expect(await me(await rs(claims(u, { iss: 'https://other-idp.test/' })))).toBe(401);
    expect(await me(await rs(claims(u, { iss: undefined })))).toBe(401);
    expect(await me(await rs(claims(u, { aud: 'another-app' })))).toBe(401);
    expect(await me(await rs(claims(u, { aud: undefined })))).toBe(401);
    expect(await me(await rs(claims(u), strangerKey))).toBe(401);
    expect(await me(await rs(claims(u, { sub: `${u.id}.0` })))).toBe(401);
    expect(await me(await hs(claims(u)))).toBe(401);
  });

  it('will not start in JWKS mode without an issuer and an audience to check', () => {
    expect(() => loadConfig({ DATABASE_URL: 'postgres://x/y', JWKS_URL: jwksUrl })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://x/y', JWKS_URL: jwksUrl, JWT_ISSUER: ISSUER })).toThrow(/JWT_AUDIENCE/);
    expect(
      loadConfig({ DATABASE_URL: 'postgres://x/y', JWKS_URL: jwksUrl, JWT_ISSUER: ISSUER, JWT_AUDIENCE: `${AUDIENCE},x` }).jwtAudience,
    ).toEqual([AUDIENCE, 'x']);
  });
});
