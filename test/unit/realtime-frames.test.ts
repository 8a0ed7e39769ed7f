import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameAssembler, MAX_FRAME_BYTES, decodeFrame, encodeFrames, packEvents, splitByBytes } from '../../src/realtime/pg-bus.js';

describe('NOTIFY frames (pg-bus)', () => {
  it('small events are one frame', () => {
    const frames = encodeFrames('abc', 7, '{"type":"x"}');
    expect(frames).toEqual(['abc 7 0 1|{"type":"x"}']);
    expect(decodeFrame(frames[0]!)).toEqual({ origin: 'abc', seq: 7, index: 0, count: 1, body: '{"type":"x"}' });
  });

  it('splits by UTF-8 bytes without cutting a code point, and reassembles in any order', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 6000 }), fc.integer({ min: 4, max: 50 }), (s, max) => {
        const parts = splitByBytes(s, max);
        expect(parts.join('')).toBe(s);
        for (const p of parts) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(Math.max(max, 4));
        for (const p of parts) expect(p).toBe(Buffer.from(p, 'utf8').toString('utf8'));
      }),
      { numRuns: 200 },
    );
  });

  it('every frame of a large event stays under the NOTIFY limit and the event survives the trip', () => {
    const json = JSON.stringify({ type: 'call.signal', payload: { sdp: '✓😀a'.repeat(5000) } });
    const frames = encodeFrames('o1', 1, json);
    expect(frames.length).toBeGreaterThan(3);
    for (const f of frames) expect(Buffer.byteLength(f)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    const asm = new FrameAssembler();
    const shuffled = [...frames].reverse();
    const results = shuffled.map((f) => asm.add(decodeFrame(f)!));
    expect(results.filter((r) => r !== null)).toEqual([json]);
    expect(asm.pending).toBe(0);
  });

  it('ignores duplicate and malformed frames; drops stale partial events', () => {
    let now = 0;
    const asm = new FrameAssembler(() => now);
    const frames = encodeFrames('o2', 9, 'x'.repeat(20_000));
    expect(asm.add(decodeFrame(frames[0]!)!)).toBeNull();
    expect(asm.add(decodeFrame(frames[0]!)!)).toBeNull();
    expect(asm.pending).toBe(1);
    now += 60_000;
    asm.add(decodeFrame(encodeFrames('o3', 1, 'y'.repeat(20_000))[0]!)!);
    expect(asm.pending).toBe(1);
    for (const bad of ['', 'no bar', 'a b c|x', 'a 1 2 1|x', 'a 1 0 0|x', 'a x 0 1|y']) expect(decodeFrame(bad), bad).toBeNull();
  });

  it('packs many small events into few notifications, in order, and big ones alone', () => {
    const small = Array.from({ length: 40 }, (_, i) => JSON.stringify({ type: 'typing', payload: { i, who: 'é'.repeat(100) } }));
    const big = JSON.stringify({ type: 'call.signal', payload: { sdp: 'x'.repeat(20_000) } });
    const messages = packEvents([...small.slice(0, 20), big, ...small.slice(20)]);
    expect(messages.length).toBeLessThan(10);
    const events = messages.flatMap((m) => JSON.parse(m) as unknown[]);
    expect(events.map((e) => JSON.stringify(e))).toEqual([...small.slice(0, 20), big, ...small.slice(20)]);
    for (const m of messages) {
      if (m.includes('call.signal')) expect(JSON.parse(m)).toHaveLength(1);
      else expect(Buffer.byteLength(m)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    }
    expect(packEvents([])).toEqual([]);
  });
});
