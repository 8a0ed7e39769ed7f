/**
 * Coexistence with the existing backend, routing: the nginx configuration of docs/migration.md,
 * rendered for local ports (no TLS), run by a real nginx in front of the real app (listening) and
 * a stand-in for the existing backend. A TCP tap in front of sessiongate records every request
 * line and header that reaches it, so each path is proven to land on the right upstream, and a
 * WebSocket upgrade is proven to arrive with its headers (and to complete on /api/v2/ws).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SignJWT } from 'jose';
import { closeContext } from '../../src/context.js';
import { createHarness, TEST_JWT_SECRET, type TestHarness } from '../helpers/app.js';
import { ROOT } from '../helpers/process.js';

const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'].find((p) => existsSync(p));
if (!NGINX) {
  console.warn('coexist-proxy: no nginx binary found (apt-get install nginx-light) — the reverse-proxy test is skipped');
}

/** The configuration block of docs/migration.md, pointed at local ports, without TLS. */
function renderDocumentedConfig(ports: { proxy: number; sessiongate: number; existing: number }, dir: string): string {
  const doc = readFileSync(join(ROOT, 'docs', 'migration.md'), 'utf8');
  const m = /<!-- nginx-config:start -->\s*```nginx\n([\s\S]*?)```\s*<!-- nginx-config:end -->/.exec(doc);
  if (!m) throw new Error('docs/migration.md has no nginx-config block');
  const replace = (s: string, from: string | RegExp, to: string) => {
    const out = s.replace(from, to);
    if (out === s) throw new Error(`the documented configuration no longer contains ${String(from)}`);
    return out;
  };
  let conf = m[1]!;
  conf = replace(conf, 'server 127.0.0.1:3000;', `server 127.0.0.1:${ports.sessiongate};`);
  conf = replace(conf, 'server 127.0.0.1:8000;', `server 127.0.0.1:${ports.existing};`);
  conf = replace(conf, 'listen 443 ssl http2;', `listen 127.0.0.1:${ports.proxy};`);
  conf = replace(conf, /^\s*ssl_certificate(_key)?\s.*$/gm, '');
  conf = replace(conf, '/var/log/nginx/access.log', join(dir, 'ws-access.log'));
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `  ${k}_temp_path ${join(dir, k)};`).join('\n');
  return `daemon off;\nmaster_process off;\nerror_log ${join(dir, 'error.log')} info;\npid ${join(dir, 'nginx.pid')};\nevents { worker_connections 256; }\nhttp {\n  access_log ${join(dir, 'access.log')};\n${temp}\n${conf}\n}\n`;
}

const listening = (s: Server | TcpServer) =>
  new Promise<number>((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
const freePort = async () => {
  const s = createTcpServer();
  const port = await listening(s);
  await new Promise((r) => s.close(r));
  return port;
};

describe.skipIf(!NGINX)('the documented reverse proxy, through a real nginx', { timeout: 120_000 }, () => {
  let t: TestHarness;
  let dir: string;
  let nginx: ChildProcess;
  let existing: Server;
  let tap: TcpServer;
  let proxy: string;
  /** Request heads that reached sessiongate (through the tap) and the existing backend. */
  let atSessiongate = '';
  const atExisting: { method: string; url: string; headers: Record<string, unknown> }[] = [];
  const tapSockets = new Set<import('node:net').Socket>();

  beforeAll(async () => {
    t = await createHarness();
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const sgPort = (t.app.server.address() as AddressInfo).port;

    existing = createHttpServer((req, res) => {
      atExisting.push({ method: req.method!, url: req.url!, headers: req.headers });
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ success: true, served_by: 'existing-backend', url: req.url }));
    });
    const existingPort = await listening(existing);

    tap = createTcpServer((client) => {
      const upstream = connect(sgPort, '127.0.0.1');
      tapSockets.add(client).add(upstream);
      client.on('data', (d: Buffer) => (atSessiongate += d.toString('latin1')));
      client.pipe(upstream).pipe(client);
      const end = () => (client.destroy(), upstream.destroy());
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    const tapPort = await listening(tap);

    dir = mkdtempSync(join(tmpdir(), 'sg-nginx-'));
    for (const k of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, k));
    const proxyPort = await freePort();
    writeFileSync(join(dir, 'nginx.conf'), renderDocumentedConfig({ proxy: proxyPort, sessiongate: tapPort, existing: existingPort }, dir));
    nginx = spawn(NGINX!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let nginxErr = '';
    nginx.stderr!.on('data', (d: Buffer) => (nginxErr += d.toString()));
    proxy = `http://127.0.0.1:${proxyPort}`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (nginx.exitCode !== null) throw new Error(`nginx exited: ${nginxErr} ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
      const up = await fetch(`${proxy}/health-of-the-proxy`).then(
        () => true,
        () => false,
      );
      if (up) break;
      if (Date.now() > deadline) throw new Error('nginx did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 180_000);

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx.once('exit', r));
      nginx.kill('SIGTERM');
      const timer = setTimeout(() => nginx.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    for (const s of tapSockets) s.destroy();
    await new Promise((r) => tap?.close(r));
    existing?.closeAllConnections();
    await new Promise((r) => existing?.close(r));
    t?.app.server.closeAllConnections();
    // An upgrade left half-open by the proxy would make close wait for it: bounded here, the
    // rest of the teardown as usual.
    if (t) {
      await Promise.race([t.app.close(), new Promise((r) => setTimeout(r, 5_000))]);
      await closeContext(t.ctx);
      await t.database.drop();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  /** Sends one request through the proxy; says which upstream saw it. */
  async function route(method: string, path: string): Promise<'sessiongate' | 'existing'> {
    const beforeTap = atSessiongate.length;
    const beforeExisting = atExisting.length;
    const res = await fetch(`${proxy}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: method === 'GET' ? undefined : '{}',
    });
    await res.arrayBuffer();
    const toSg = atSessiongate.slice(beforeTap).includes(`${method} ${path} HTTP/1.1\r\n`);
    const toExisting = atExisting.slice(beforeExisting).some((r) => r.method === method && r.url === path);
    expect(toSg !== toExisting, `${method} ${path} reached exactly one upstream`).toBe(true);
    return toSg ? 'sessiongate' : 'existing';
  }

  it.each([
    ['GET', '/api/appointments'],
    ['POST', '/api/appointments'],
    ['GET', '/api/appointments/57'],
    ['PATCH', '/api/doctor/appointments/57/status'],
    ['GET', '/api/doctors/9/booked-slots'],
    ['GET', '/api/doctors/9/availability'],
    ['POST', '/api/text-sessions/start'],
    ['POST', '/api/text-sessions/12/end'],
    ['POST', '/api/text-appointments/start-session'],
    ['GET', '/api/chat/text_session_12/messages'],
    ['POST', '/api/upload/chat-image'],
    ['POST', '/api/upload/voice-message'],
    ['POST', '/api/call-sessions/start'],
    ['GET', '/api/doctor/wallet'],
    ['GET', '/api/doctor/wallet/transactions?page=1&per_page=10'],
    ['GET', '/api/subscription'],
    ['GET', '/api/dashboard/summary'],
    ['GET', '/api/v2/me'],
  ])('%s %s reaches sessiongate', async (method, path) => {
    expect(await route(method, path)).toBe('sessiongate');
  });

  it.each([
    ['POST', '/api/login'],
    ['POST', '/api/register'],
    ['POST', '/api/refresh'],
    ['GET', '/api/user'],
    ['GET', '/api/plans'],
    ['POST', '/api/payments/paychangu/initiate'],
    ['POST', '/api/chatbot/response'],
    ['GET', '/api/notifications'],
    ['GET', '/api/doctors/9'],
    ['GET', '/api/doctors/active'],
    ['GET', '/api/appointments/statistics/monthly'],
    ['POST', '/api/upload/profile-picture'],
    ['GET', '/api/doctor/profile'],
    ['GET', '/api/images/chat/a.jpg'],
    ['GET', '/'],
  ])('%s %s stays on the existing backend', async (method, path) => {
    expect(await route(method, path)).toBe('existing');
  });

  it('a token of the existing login works on sessiongate through the proxy', async () => {
    const patient = await t.newPatient({ name: 'Through Proxy' });
    const token = await new SignJWT({ user_type: 'patient' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(`${proxy}/api/login`)
      .setSubject(String(patient.id))
      .setIssuedAt()
      .setNotBefore('0s')
      .setJti('abc123')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    const res = await fetch(`${proxy}/api/v2/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { data: { id: number; role: string } }).data).toMatchObject({ id: patient.id, role: 'patient' });
  });

  it('passes a WebSocket upgrade on /chat-signaling to sessiongate with its upgrade headers, and completes one on /api/v2/ws', async () => {
    const before = atSessiongate.length;
    const beforeExisting = atExisting.length;
    // The app's handshake: query identity, the `no-compression` sub-protocol.
    const ws = new WebSocket(
      `${proxy.replace('http', 'ws')}/chat-signaling?appointmentId=text_session_12&userId=4&authToken=x.y.z`,
      'no-compression',
    );
    ws.on('error', () => {}); // the token is not a real one: sessiongate refuses it; the head is what is asserted
    await expect.poll(() => atSessiongate.slice(before), { timeout: 10_000 }).toContain('GET /chat-signaling?');
    await expect.poll(() => atSessiongate.slice(before), { timeout: 5_000 }).toContain('\r\n\r\n');
    ws.terminate();
    const head = atSessiongate.slice(before);
    expect(head).toContain('GET /chat-signaling?appointmentId=text_session_12&userId=4&authToken=x.y.z HTTP/1.1\r\n');
    expect(head).toMatch(/\r\nUpgrade: websocket\r\n/i);
    expect(head).toMatch(/\r\nConnection: upgrade\r\n/i);
    expect(head).toMatch(/\r\nSec-WebSocket-Key: [A-Za-z0-9+/=]+\r\n/i);
    expect(head).toMatch(/\r\nSec-WebSocket-Protocol: no-compression\r\n/i);
    expect(atExisting.length).toBe(beforeExisting);
    // The socket's access log line leaves the query (and its token) out.
    await expect
      .poll(() => (existsSync(join(dir, 'ws-access.log')) ? readFileSync(join(dir, 'ws-access.log'), 'utf8') : ''))
      .toContain('"GET /chat-signaling"');
    expect(readFileSync(join(dir, 'ws-access.log'), 'utf8')).not.toContain('authToken');

    // A full upgrade through the proxy: sessiongate's own socket answers 101 and talks.
    const user = await t.newDoctor();
    const token = await t.token(user);
    const own = new WebSocket(`${proxy.replace('http', 'ws')}/api/v2/ws?token=${token}`, { handshakeTimeout: 10_000 });
    const first = await new Promise<string>((resolve, reject) => {
      own.once('message', (d: Buffer) => resolve(d.toString()));
      own.once('close', (code) => reject(new Error(`closed ${code}`)));
      own.once('error', reject);
      own.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
    });
    own.terminate();
    expect(JSON.parse(first)).toMatchObject({ type: 'ready', user_id: user.id });
  });
});
