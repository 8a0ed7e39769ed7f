/** pino options shared by every process role: JSON lines, secrets redacted. */
import type { LoggerOptions } from 'pino';

export function loggerOptions(level: string, role: string): LoggerOptions {
  return {
    level,
    base: { role, pid: process.pid },
    // Tokens and message bodies never reach the logs.
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["sec-websocket-protocol"]',
        'headers.authorization',
        'token',
        'jwt',
        'body',
        'message_body',
        '*.body',
      ],
      censor: '[redacted]',
    },
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
  };
}
