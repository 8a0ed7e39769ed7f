/**
 * The WebSocket protocol's AsyncAPI document (`/docs/asyncapi.json`) describes what the socket
 * really sends: every frame a real client receives in a chat — `ready`, `subscribed`,
 * `message.created`, `typing`, `ack`, `error` — validates against the document's schema of its type,
 * and every client message the gateway accepts is in it.
 */
import type { AddressInfo } from 'node:net';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { asyncApiDocument } from '../../src/realtime/asyncapi.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

type Frame = { type: string; [k: string]: unknown };
// A plain JSON Schema validator reads the document as any client would.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => t?.close());

describe('the AsyncAPI document', () => {
  it('is served beside the OpenAPI document', async () => {
    const res = await t.app.inject('/docs/asyncapi.json');
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.asyncapi).toBe('3.0.0');
    expect(Object.keys(doc.channels['session-events'].messages)).toEqual(
      expect.arrayContaining([
        'event.message.created',
        'event.session.status',
        'event.call.signal',
        'control.ready',
        'control.error',
        'client.subscribe',
        'client.call.signal',
      ]),
    );
    for (const op of Object.values(doc.operations) as { messages: { $ref: string }[] }[]) {
      for (const m of op.messages) expect(doc.channels['session-events'].messages[m.$ref.split('/').at(-1)!], m.$ref).toBeDefined();
    }
  });

  it('describes every frame a real chat produces', async () => {
    const a = await t.newAppointment({});
    await t.giveCredits(a.patient, { text: 1 });
    const started = await t.app.inject({
      method: 'POST',
      url: `/api/v2/appointments/${a.id}/start-session`,
      headers: await t.auth(a.patient),
    });
    const context = started.json().data.session_context as string;

    const messages = asyncApiDocument('test').channels['session-events'].messages;
    const checkers = new Map<string, ValidateFunction>();
    const check = (f: Frame) => {
      const key = [`event.${f.type}`, `control.${f.type}`].find((k) => k in messages);
      expect(key, `frame type ${f.type} is documented`).toBeDefined();
      if (!checkers.has(key!)) checkers.set(key!, ajv.compile(JSON.parse(JSON.stringify(messages[key!]!.payload)) as object));
      const checker = checkers.get(key!)!;
      expect(checker(f), `${f.type}: ${ajv.errorsText(checker.errors)}`).toBe(true);
    };

    const frames: Frame[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/api/v2/ws`, [
      'bearer',
      await t.token(a.doctor),
    ]);
    const seen = (type: string) =>
      new Promise<void>((resolve) => {
        const poll = () => (frames.some((f) => f.type === type) ? resolve() : setTimeout(poll, 10));
        poll();
      });
    ws.on('message', (raw) => frames.push(JSON.parse(raw.toString()) as Frame));
    await seen('ready');
    ws.send(JSON.stringify({ type: 'subscribe', session_context: context, ref: 's1' }));
    await seen('subscribed');
    ws.send(JSON.stringify({ type: 'typing', session_context: context, typing: true, ref: 7 }));
    await seen('ack');
    ws.send(JSON.stringify({ type: 'subscribe', session_context: 'text_session:999999', ref: 'bad' }));
    await seen('error');
    await t.app.inject({
      method: 'POST',
      url: `/api/v2/sessions/${context}/messages`,
      headers: await t.auth(a.patient),
      payload: { client_message_id: 'a1', type: 'text', body: 'Hello' },
    });
    await seen('message.created');
    ws.close();
    expect(frames.map((f) => f.type)).toEqual(expect.arrayContaining(['ready', 'subscribed', 'typing', 'ack', 'error', 'message.created']));
    for (const f of frames) check(f);
  });
});
