/**
 * Domain errors: small classes with a stable `code`. Services throw these; one error handler
 * (plugins/errors.ts) turns them into RFC 9457 problem responses. Services never speak HTTP.
 */
export type ErrorCode =
  | 'SESSION_CONTEXT_REQUIRED'
  | 'SESSION_NOT_READY'
  | 'SESSION_BILLING_REQUIRED'
  | 'SESSION_NOT_ACTIVE'
  | 'CONTENT_BLOCKED'
  | 'VALIDATION_FAILED'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'INSUFFICIENT_CREDITS'
  | 'RATE_LIMITED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'SERVICE_UNAVAILABLE'
  | 'INTERNAL_ERROR';

export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  SESSION_CONTEXT_REQUIRED: 400,
  SESSION_NOT_READY: 403,
  SESSION_BILLING_REQUIRED: 400,
  SESSION_NOT_ACTIVE: 403,
  CONTENT_BLOCKED: 400,
  VALIDATION_FAILED: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  INSUFFICIENT_CREDITS: 402,
  RATE_LIMITED: 429,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  SERVICE_UNAVAILABLE: 503,
  INTERNAL_ERROR: 500,
};

/** Extra members of the problem body: the ids a client needs to recover. */
export type ErrorDetails = Record<string, string | number | boolean | null | undefined | object>;

export class DomainError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetails = {},
  ) {
    super(message);
    this.name = 'DomainError';
    this.status = STATUS_BY_CODE[code];
  }
}

export const notFound = (what: string, details: ErrorDetails = {}) =>
  new DomainError('NOT_FOUND', `${what} not found`, details);
export const forbidden = (message = 'You may not access this resource', details: ErrorDetails = {}) =>
  new DomainError('FORBIDDEN', message, details);
export const conflict = (message: string, details: ErrorDetails = {}) => new DomainError('CONFLICT', message, details);
export const invalid = (message: string, details: ErrorDetails = {}) =>
  new DomainError('VALIDATION_FAILED', message, details);
export const unauthenticated = (message = 'Authentication required') => new DomainError('UNAUTHENTICATED', message);

/** PostgreSQL error classes we translate instead of surfacing as 500. */
export function pgErrorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}

export const isUniqueViolation = (err: unknown) => pgErrorCode(err) === '23505';
export const isForeignKeyViolation = (err: unknown) => pgErrorCode(err) === '23503';
export const isCheckViolation = (err: unknown) => pgErrorCode(err) === '23514';

/** Errors that mean "the database is not reachable right now" (→ 503, retryable). */
export function isDatabaseUnavailable(err: unknown): boolean {
  const code = pgErrorCode(err);
  if (code && /^(08|57P0[1-3]|53300)/.test(code)) return true;
  const msg = err instanceof Error ? err.message : '';
  return /Connection terminated|ECONNREFUSED|ECONNRESET|timeout exceeded when trying to connect|Client has encountered a connection error|connection is closed|Cannot use a pool after calling end/i.test(
    msg,
  );
}
