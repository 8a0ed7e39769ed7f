/**
 * The one place errors become HTTP: domain errors, validation, parser and database failures
 * all leave as `application/problem+json` (RFC 9457) with `success:false`, `error_code` and
 * `message`. A 5xx never carries internals.
 */
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import fp from 'fastify-plugin';
import { DomainError, STATUS_BY_CODE, isDatabaseUnavailable, type ErrorCode, type ErrorDetails } from '../lib/errors.js';
import { documentedErrorCodes } from '../lib/schemas.js';

/** The warning logged when a route answers an error code its API document does not list. */
export const UNDOCUMENTED_ERROR_CODE = 'error code not in the API document';

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function sendProblem(reply: FastifyReply, code: ErrorCode, message: string, details: ErrorDetails = {}) {
  const status = STATUS_BY_CODE[code];
  const documented = documentedErrorCodes(reply.routeOptions.schema?.response, status);
  if (documented && !documented.includes(code)) {
    reply.log.warn({ error_code: code, method: reply.request.method, route: reply.routeOptions.url }, UNDOCUMENTED_ERROR_CODE);
  }
  return reply
    .code(status)
    .type('application/problem+json')
    .send({
      // Ids first: the RFC 9457 members below always win over a detail of the same name.
      ...details,
      type: `https://sessiongate.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
      title: TITLES[status] ?? 'Error',
      status,
      detail: message,
      success: false,
      error_code: code,
      message,
    });
}

function classify(err: FastifyError): { code: ErrorCode; message: string; details?: ErrorDetails } {
  if (err instanceof DomainError) return { code: err.code, message: err.message, details: err.details };
  if (err.validation) {
    const context = err.validationContext ?? 'request';
    return {
      code: 'VALIDATION_FAILED',
      message: `Invalid ${context}: ${err.message}`,
      details: {
        errors: err.validation.map((v) => ({
          location: context,
          path: v.instancePath || '/',
          message: v.message ?? 'invalid',
          ...(v.params && 'additionalProperty' in v.params ? { field: String(v.params.additionalProperty) } : {}),
        })),
      },
    };
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'PAYLOAD_TOO_LARGE', message: 'Request body is too large' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'Send JSON with Content-Type: application/json' };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { code: 'VALIDATION_FAILED', message: 'Request body is not valid JSON' };
  }
  if (err.statusCode === 429) return { code: 'RATE_LIMITED', message: 'Too many requests; slow down' };
  if (err instanceof SyntaxError || (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)) {
    return { code: 'VALIDATION_FAILED', message: err.statusCode === 400 ? err.message : 'Bad request' };
  }
  if (isDatabaseUnavailable(err)) {
    return { code: 'SERVICE_UNAVAILABLE', message: 'The service is temporarily unavailable; retry shortly' };
  }
  return { code: 'INTERNAL_ERROR', message: 'Something went wrong on our side' };
}

export default fp(
  async function errors(app: FastifyInstance) {
    app.setErrorHandler((err: FastifyError, req, reply) => {
      const { code, message, details } = classify(err);
      const status = STATUS_BY_CODE[code];
      if (status >= 500) req.log.error({ err }, 'request failed');
      else req.log.info({ error_code: code }, 'request rejected');
      if (code === 'RATE_LIMITED') reply.header('retry-after', String(Math.ceil(Number(reply.getHeader('retry-after') ?? 1))));
      if (code === 'SERVICE_UNAVAILABLE') reply.header('retry-after', '2');
      return sendProblem(reply, code, message, details);
    });
    app.setNotFoundHandler((req, reply) => sendProblem(reply, 'NOT_FOUND', `No route ${req.method} ${req.url.split('?')[0]}`));
  },
  { name: 'errors' },
);
