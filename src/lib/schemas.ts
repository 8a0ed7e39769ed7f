/**
 * Shared TypeBox schemas. Validation does not coerce types (a JSON body with "5" where a number
 * belongs is a 400), so path and query ids are declared as strict digit strings and converted.
 */
import { Type, type Static, type StringOptions, type TLiteral, type TSchema, type TUnion } from '@sinclair/typebox';
import { STATUS_BY_CODE, type ErrorCode } from './errors.js';

/**
 * Text a client sends. Control characters are refused — NUL above all, which PostgreSQL cannot
 * store in text (it answered 500s) — and so are lone UTF-16 surrogates (not text; they would be
 * stored as U+FFFD). Ajv compiles patterns with the `u` flag, so a surrogate PAIR (an emoji) is
 * one code point and passes. Every text field of a request uses `Text` or `MultilineText`.
 */
export const NO_CONTROL_PATTERN = '^[^\\u0000-\\u001F\\u007F-\\u009F\\uD800-\\uDFFF]*$';
/** As above, but newline, carriage return and tab are kept (chat bodies, reasons). */
export const NO_CONTROL_MULTILINE_PATTERN = '^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\uD800-\\uDFFF]*$';
export const Text = (opts: StringOptions = {}) => Type.String({ pattern: NO_CONTROL_PATTERN, ...opts });
export const MultilineText = (opts: StringOptions = {}) => Type.String({ pattern: NO_CONTROL_MULTILINE_PATTERN, ...opts });

export const IdString = Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'A positive integer id' });
export const Id = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
export const IsoDateTime = Type.String({
  format: 'date-time',
  description: 'ISO-8601 with an offset, e.g. 2026-11-26T14:00:00+02:00',
});
export const NullableDateTime = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

export const IdParams = Type.Object({ id: IdString }, { additionalProperties: false });
export type IdParams = Static<typeof IdParams>;

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    success: Type.Literal(false),
    error_code: Type.String(),
    message: Type.String(),
  },
  { $id: 'Problem', additionalProperties: true, description: 'RFC 9457 problem details' },
);

export const ProblemRef = Type.Ref('Problem');

/** `{ success: true, data }` envelope. */
export const Ok = <T extends TSchema>(data: T) => Type.Object({ success: Type.Literal(true), data });

/**
 * What any route may answer whatever it does: a request its schema refuses (or too large, or not
 * JSON), the rate limit, the database away, a bug.
 */
export const BASELINE_ERROR_CODES: readonly ErrorCode[] = [
  'VALIDATION_FAILED',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'RATE_LIMITED',
  'SERVICE_UNAVAILABLE',
  'INTERNAL_ERROR',
];

/**
 * The error responses of a route, one per status, each a problem document whose `error_code` is
 * one of the codes named (plus the baseline): the API document lists exactly what a client must
 * handle, and `sendProblem` warns when a route answers a code its document does not list (the test
 * harness fails on that warning).
 */
export function problems(...codes: ErrorCode[]): ProblemResponses {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set([...BASELINE_ERROR_CODES, ...codes])) {
    const status = STATUS_BY_CODE[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      String(status),
      Type.Object(
        { ...Problem.properties, error_code: Type.Unsafe<string>({ type: 'string', enum: list }) },
        { additionalProperties: true, description: `Problem document; error_code: ${list.join(', ')}` },
      ),
    ]),
  ) as unknown as ProblemResponses;
}

/**
 * The type of `problems()`: its keys are the exact statuses at run time; to the type provider they
 * read as the 4xx / 5xx ranges, so a handler may answer any error status it documents.
 */
export type ProblemResponses = { '4xx': TSchema; '5xx': TSchema };

/** The error codes a route's document lists for `status`, or null when it documents no errors. */
export function documentedErrorCodes(response: unknown, status: number): readonly string[] | null {
  if (!response || typeof response !== 'object') return null;
  const schema = (response as Record<string, { properties?: { error_code?: { enum?: string[] } } } | undefined>)[String(status)];
  return schema?.properties?.error_code?.enum ?? [];
}

/** Codes every authenticated route can answer besides the baseline. */
export const errorResponses = problems('UNAUTHENTICATED');

export const toId = (s: string): number => Number(s);
export const iso = (d: Date | string | null | undefined): string | null =>
  d == null ? null : (d instanceof Date ? d : new Date(d)).toISOString();

/** A union of string literals from a const list (keeps the literal type). */
export const Literals = <T extends string>(values: readonly T[]) =>
  Type.Union(values.map((v) => Type.Literal(v))) as unknown as TUnion<TLiteral<T>[]>;
