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
    serializers: {
      req: (req: { method?: string; url?: string; id?: string }) => ({ method: req.method, url: redactUrl(req.url), id: req.id }),
    },
  };
}

/** Drops secrets from a URL before it is logged (the WebSocket accepts `?token=`). */
export function redactUrl(url: string | undefined): string | undefined {
  if (!url || !url.includes('?')) return url;
  return url.replace(/([?&](?:token|access_token|jwt)=)[^&]*/gi, '$1[redacted]');
}
