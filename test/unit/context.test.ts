import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  classifyChatPathParam,
  formatSessionContext,
  parsePositiveId,
  parseSessionContext,
  type ContextParse,
} from '../../src/modules/session-context.js';

const INT8_MAX = '9223372036854775807';
const INT8_MAX_PLUS_1 = '9223372036854775808';
const SAFE_MAX = String(Number.MAX_SAFE_INTEGER);
const SAFE_MAX_PLUS_1 = '9007199254740992';

describe('formatSessionContext', () => {
  it.each([
    ['text', 1, 'text_session:1'],
    ['call', 456, 'call_session:456'],
    ['text', Number.MAX_SAFE_INTEGER, `text_session:${SAFE_MAX}`],
  ] as const)('%s %d → %s', (kind, id, expected) => {
    expect(formatSessionContext(kind, id)).toBe(expected);
  });
});

describe('parseSessionContext', () => {
  const session = (kind: 'text' | 'call', id: number): ContextParse => ({
    type: 'session',
    kind,
    id,
    context: formatSessionContext(kind, id),
  });

  it.each<[string, ContextParse]>([
    // canonical
    ['text_session:123', session('text', 123)],
    ['call_session:456', session('call', 456)],
    ['text_session:1', session('text', 1)],
    [`call_session:${SAFE_MAX}`, session('call', Number.MAX_SAFE_INTEGER)],
    // legacy, normalised
    ['text_session_123', session('text', 123)],
    ['call_session_7', session('call', 7)],
    // int8 range: fits but beyond safe integers → cannot exist
    [`text_session:${SAFE_MAX_PLUS_1}`, { type: 'nonexistent', kind: 'text' }],
    [`call_session:${INT8_MAX}`, { type: 'nonexistent', kind: 'call' }],
    [`text_session_${INT8_MAX}`, { type: 'nonexistent', kind: 'text' }],
    // direct routing keys
    ['direct_session_1700000000_abcdef12', { type: 'direct' }],
    ['direct_session_', { type: 'direct' }],
    ['direct_session:5', { type: 'direct' }],
  ])('%j → %j', (raw, expected) => {
    expect(parseSessionContext(raw)).toEqual(expected);
  });

  it.each([
    ['', 'empty'],
    ['123', 'bare number'],
    ['0', 'bare zero'],
    [INT8_MAX, 'bare int8 max'],
    [`text_session:${INT8_MAX_PLUS_1}`, 'int8 max + 1'],
    ['text_session:99999999999999999999', '20 digits'],
    ['text_session:0', 'zero id'],
    ['text_session:007', 'leading zeros'],
    ['text_session:-1', 'negative sign'],
    ['text_session:+1', 'plus sign'],
    ['text_session:12abc', 'trailing garbage'],
    ['text_session:1.5', 'decimal'],
    ['text_session:1e3', 'exponent'],
    ['text_session:0x10', 'hex'],
    [' text_session:1', 'leading space'],
    ['text_session:1 ', 'trailing space'],
    ['text_session: 1', 'inner space'],
    ['text_session:1\n', 'trailing newline'],
    ['text_session:\t1', 'tab'],
    ['text_session:', 'missing id'],
    ['text_session', 'prefix only'],
    ['Text_session:1', 'capitalised prefix'],
    ['TEXT_SESSION:1', 'upper-case prefix'],
    ['video_session:1', 'unknown kind'],
    ['text_session::1', 'double separator'],
    ['text_session-1', 'wrong separator'],
    ['text_session:١٢', 'non-ASCII digits'],
    ['text_session:１', 'full-width digit'],
    ['xtext_session:1', 'prefix not at start'],
    ['Direct_session_1', 'capitalised direct'],
    ['direct_session', 'direct without separator'],
    ['direct_session_' + 'a'.repeat(60), 'too long even when direct'],
    ['text_session:' + '1'.repeat(100), 'too long'],
  ])('%j is invalid (%s)', (raw) => {
    expect(parseSessionContext(raw).type).toBe('invalid');
  });

  it('int8 boundary: max → nonexistent, max + 1 → invalid', () => {
    expect(parseSessionContext(`text_session:${INT8_MAX}`)).toEqual({ type: 'nonexistent', kind: 'text' });
    expect(parseSessionContext(`text_session:${INT8_MAX_PLUS_1}`).type).toBe('invalid');
  });

  it('round-trips format → parse for every safe positive id, canonical and legacy', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('text' as const, 'call' as const),
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        (kind, id) => {
          const canonical = formatSessionContext(kind, id);
          const expected = { type: 'session', kind, id, context: canonical };
          expect(parseSessionContext(canonical)).toEqual(expected);
          expect(parseSessionContext(`${kind}_session_${id}`)).toEqual(expected);
        },
      ),
    );
  });

  it('ids between MAX_SAFE_INTEGER and int8 max are nonexistent, above are invalid', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: BigInt(SAFE_MAX_PLUS_1), max: BigInt(INT8_MAX) }), (id) => {
        expect(parseSessionContext(`call_session:${id}`)).toEqual({ type: 'nonexistent', kind: 'call' });
      }),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: BigInt(INT8_MAX_PLUS_1), max: 10n ** 30n }), (id) => {
        expect(parseSessionContext(`call_session:${id}`).type).toBe('invalid');
      }),
    );
  });

  it('bare numbers are never sessions', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.nat().map(String),
          fc.bigInt({ min: 0n, max: 10n ** 25n }).map(String),
          fc.stringMatching(/^[0-9]{1,30}$/),
        ),
        (raw) => {
          expect(parseSessionContext(raw).type).toBe('invalid');
        },
      ),
    );
  });

  it('random strings that do not look canonical are invalid or direct', () => {
    const looksLikeContext = /^(text|call)_session[:_][0-9]+$/;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'grapheme', maxLength: 80 }),
          // Near misses: a real prefix followed by arbitrary characters.
          fc
            .tuple(
              fc.constantFrom('text_session', 'call_session', 'text_session:', 'call_session_', 'direct_session'),
              fc.string({ maxLength: 30 }),
            )
            .map(([prefix, rest]) => prefix + rest),
        ),
        (raw) => {
          fc.pre(!looksLikeContext.test(raw));
          expect(['invalid', 'direct']).toContain(parseSessionContext(raw).type);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('mutated contexts (noise around a valid one) are never accepted', () => {
    const noise = fc.constantFrom(' ', '\t', '\n', '\u00a0', '\u200b', '+', '-', '0', 'a', '.', ':', '_');
    fc.assert(
      fc.property(
        fc.constantFrom('text_session:', 'call_session_'),
        fc.integer({ min: 1, max: 1_000_000 }),
        noise,
        fc.constantFrom('before', 'after', 'between'),
        (prefix, id, ch, where) => {
          const raw =
            where === 'before'
              ? `${ch}${prefix}${id}`
              : where === 'after'
                ? `${prefix}${id}${ch}`
                : `${prefix}${ch}${id}`;
          // The only noise that can still yield a valid context is a digit appended after the id.
          fc.pre(!(where === 'after' && ch === '0'));
          expect(parseSessionContext(raw).type).toBe('invalid');
        },
      ),
    );
  });

  it('never throws on arbitrary input and any session result is canonical', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (raw) => {
        const r = parseSessionContext(raw);
        if (r.type === 'session') {
          expect(Number.isSafeInteger(r.id) && r.id >= 1).toBe(true);
          expect(r.context).toBe(formatSessionContext(r.kind, r.id));
        }
      }),
    );
  });
});

describe('parsePositiveId', () => {
  it.each<[string, number | null]>([
    ['1', 1],
    ['42', 42],
    [SAFE_MAX, Number.MAX_SAFE_INTEGER],
    [SAFE_MAX_PLUS_1, null],
    [INT8_MAX, null],
    ['0', null],
    ['00', null],
    ['012', null],
    ['-1', null],
    ['+1', null],
    [' 1', null],
    ['1 ', null],
    ['12abc', null],
    ['1.0', null],
    ['1e3', null],
    ['0x1', null],
    ['', null],
    ['١', null],
    ['text_session:1', null],
  ])('%j → %j', (raw, expected) => {
    expect(parsePositiveId(raw)).toBe(expected);
  });

  it('accepts exactly the decimal form of positive safe integers', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (n) => {
        expect(parsePositiveId(String(n))).toBe(n);
      }),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (raw) => {
        const id = parsePositiveId(raw);
        if (id !== null) expect(String(id)).toBe(raw);
      }),
    );
  });
});

describe('classifyChatPathParam', () => {
  it.each<[string, ReturnType<typeof classifyChatPathParam>]>([
    ['123', { type: 'appointment', id: 123 }],
    [SAFE_MAX, { type: 'appointment', id: Number.MAX_SAFE_INTEGER }],
    ['text_session_123', { type: 'session', kind: 'text', id: 123, context: 'text_session:123' }],
    ['call_session:9', { type: 'session', kind: 'call', id: 9, context: 'call_session:9' }],
    ['direct_session_1700000000_abcdef12', { type: 'direct' }],
    [`text_session:${INT8_MAX}`, { type: 'nonexistent', kind: 'text' }],
  ])('%j → %j', (raw, expected) => {
    expect(classifyChatPathParam(raw)).toEqual(expected);
  });

  it.each(['0', '007', '-5', '12abc', ' 12', SAFE_MAX_PLUS_1, INT8_MAX, 'abc', ''])('%j is invalid', (raw) => {
    expect(classifyChatPathParam(raw).type).toBe('invalid');
  });

  it('every positive safe integer is an appointment id', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (n) => {
        expect(classifyChatPathParam(String(n))).toEqual({ type: 'appointment', id: n });
      }),
    );
  });
});
