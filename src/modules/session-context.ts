/**
 * Session context strings: the public names of sessions (`text_session:42`, `call_session:7`).
 *
 * Terminology:
 * - canonical context — `text_session:{id}` / `call_session:{id}`, what the API emits;
 * - legacy context    — `text_session_{id}` / `call_session_{id}`, what old mobile clients send;
 *                       accepted and normalised to the canonical form;
 * - direct key        — `direct_session_*`, an instant-call routing key of the old system; it
 *                       names no session, so neither chat nor billing may go through it;
 * - bare number       — always an appointment id, never a session (text and call ids used to
 *                       collide in the old system, so a number alone is ambiguous).
 *
 * Pure: no IO. Whether the session exists, and whether its kind matches the prefix, is the
 * repository's question.
 */

/** The two session tables of the old system collapse into one `kind` column. */
export type SessionKind = 'text' | 'call';

/** Result of {@link parseSessionContext}. */
export type ContextParse =
  | { type: 'session'; kind: SessionKind; id: number; context: string }
  | { type: 'nonexistent'; kind: SessionKind }
  | { type: 'direct' }
  | { type: 'invalid'; reason: string };

/** Result of {@link classifyChatPathParam}: an appointment id or a session context. */
export type ChatPathParam = { type: 'appointment'; id: number } | ContextParse;

// Longest valid input is `call_session:` + 19 digits = 32 chars; 64 leaves room for nothing
// legitimate and keeps regex work bounded on hostile input.
const MAX_CONTEXT_LENGTH = 64;

// PostgreSQL int8 max. Ids are compared as digit strings (same length → lexicographic order
// equals numeric order), because floats lose precision above 2^53.
const INT8_MAX_DIGITS = '9223372036854775807';
const SAFE_MAX_DIGITS = String(Number.MAX_SAFE_INTEGER); // '9007199254740991', 16 digits

// ASCII digits only ([0-9], not \p{Nd}); first digit 1-9 rules out 0 and leading zeros.
const POSITIVE_DIGITS = /^[1-9][0-9]*$/;
const CONTEXT_PATTERN = /^(text|call)_session([:_])([1-9][0-9]*)$/;
const DIRECT_PREFIXES = ['direct_session_', 'direct_session:'] as const;

/** Numeric comparison of two canonical digit strings (no sign, no leading zeros). */
function digitsAtMost(digits: string, max: string): boolean {
  if (digits.length !== max.length) return digits.length < max.length;
  return digits <= max;
}

/**
 * Strict parser for positive integer ids in paths: ASCII digits only, no sign, no whitespace,
 * no leading zeros, 1 ≤ id ≤ Number.MAX_SAFE_INTEGER.
 *
 * @returns the id, or `null` when `raw` is not such an id.
 */
export function parsePositiveId(raw: string): number | null {
  if (raw.length > SAFE_MAX_DIGITS.length || !POSITIVE_DIGITS.test(raw)) return null;
  if (!digitsAtMost(raw, SAFE_MAX_DIGITS)) return null;
  return Number(raw);
}

/**
 * Build the canonical context string for a session.
 *
 * @example formatSessionContext('text', 42) === 'text_session:42'
 */
export function formatSessionContext(kind: SessionKind, id: number): string {
  return `${kind}_session:${id}`;
}

/**
 * Parse a session context string.
 *
 * - `text_session:{id}` / `call_session:{id}` → `session` (canonical);
 * - `text_session_{id}` / `call_session_{id}` → `session`, `context` normalised to canonical;
 * - `direct_session_…` / `direct_session:…` → `direct` (a routing key, not a session);
 * - an id that fits int8 but exceeds Number.MAX_SAFE_INTEGER → `nonexistent` (our sequences
 *   never get there, and a JS number could not represent it exactly);
 * - everything else, bare numbers included → `invalid` with a reason.
 *
 * Prefixes are case-sensitive; whitespace anywhere is rejected (no trimming).
 */
export function parseSessionContext(raw: string): ContextParse {
  // Length first, so the regexes below only ever see short strings.
  if (raw.length === 0) return { type: 'invalid', reason: 'empty' };
  if (raw.length > MAX_CONTEXT_LENGTH) return { type: 'invalid', reason: 'too_long' };

  if (DIRECT_PREFIXES.some((prefix) => raw.startsWith(prefix))) return { type: 'direct' };

  // A bare number is an appointment id; accepting it here would resurrect the old ambiguity.
  if (/^[0-9]+$/.test(raw)) return { type: 'invalid', reason: 'bare_number' };

  const match = CONTEXT_PATTERN.exec(raw);
  if (match === null) return { type: 'invalid', reason: 'malformed' };

  const kind = match[1] as SessionKind;
  const digits = match[3] as string;
  if (!digitsAtMost(digits, INT8_MAX_DIGITS)) return { type: 'invalid', reason: 'id_out_of_range' };
  if (!digitsAtMost(digits, SAFE_MAX_DIGITS)) return { type: 'nonexistent', kind };

  const id = Number(digits);
  return { type: 'session', kind, id, context: formatSessionContext(kind, id) };
}

/**
 * Classify the `{id}` of legacy `/api/v2/chat/{id}/…` routes. Old clients put either an appointment
 * id or a session context there: a strict positive safe integer is an appointment id; anything
 * else is parsed as a session context.
 */
export function classifyChatPathParam(raw: string): ChatPathParam {
  const appointmentId = parsePositiveId(raw);
  if (appointmentId !== null) return { type: 'appointment', id: appointmentId };
  return parseSessionContext(raw);
}
