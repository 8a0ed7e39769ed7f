/** pino options shared by every process role: JSON lines, secrets redacted. */
import pino, { type Logger, type LoggerOptions } from 'pino';

/** How long a buffered log line may wait before it is written (see `createLogger`). */
export const LOG_FLUSH_INTERVAL_MS = 1000;

/**
 * The logger of a long-running process (`serve`, `worker`, `npm start`): JSON lines on stdout.
 *
 * With `bufferBytes > 0` lines are collected in memory and written once that many bytes are
 * waiting, and at least every second — one write system call per batch instead of one per line.
 * On the legacy chat routes every request writes a guard warning, and the synchronous write
 * alone was most of the guard's cost (docs/benchmarks.md). Buffered lines are written on a
 * normal exit, on shutdown and on a crash that reaches `process.on('exit')`; a SIGKILL loses at
 * most the last second. Every guard decision is also a database row, so nothing an audit needs
 * lives only in the log. `bufferBytes = 0` writes each line at once.
 */
export function createLogger(level: string, role: string, bufferBytes: number): Logger {
  if (bufferBytes <= 0) return pino(loggerOptions(level, role), pino.destination({ dest: 1, sync: true }));
  const destination = pino.destination({ dest: 1, sync: false, minLength: bufferBytes });
  const timer = setInterval(() => {
    try {
      destination.flush();
    } catch {
      clearInterval(timer); // the stream was closed at exit
    }
  }, LOG_FLUSH_INTERVAL_MS);
  timer.unref();
  return pino(loggerOptions(level, role), destination);
}

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

/**
 * Drops secrets from a URL before it is logged (the WebSocket accepts `?token=`, the original app's
 * sockets `?authToken=`; a media URL's path segment is its capability token).
 */
export function redactUrl(url: string | undefined): string | undefined {
  if (url && url.startsWith('/api/v2/media/')) url = url.replace(/^\/api\/v2\/media\/[^/?#]+/, '/api/v2/media/[redacted]');
  if (!url || !url.includes('?')) return url;
  return url.replace(/([?&](?:token|access_token|jwt|authToken)=)[^&]*/gi, '$1[redacted]');
}
