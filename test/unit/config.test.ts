import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env.js';

const problemsOf = (src: Record<string, string>): string[] => {
  try {
    loadConfig(src);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    expect(loadConfig({})).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      databaseUrl: null,
      dataDir: './data',
      logLevel: 'info',
      runWorker: false,
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      dbPoolSize: 10,
      autoStartIntervalSeconds: 30,
      autoStartBatchSize: 2000,
      recordRetentionDays: 30,
      originalCallSocketRequireToken: false,
    });
  });

  it('trims values, treats blanks as unset, converts numbers, booleans and lists; the role decides two defaults', () => {
    const c = loadConfig(
      { PORT: ' 8080 ', HOST: '0.0.0.0', DATA_DIR: '  ', JWT_ISSUER: 'a, b,', METRICS_PORT: '' },
      { runWorker: true, metricsPort: 9464 },
    );
    expect(c).toMatchObject({
      port: 8080,
      dataDir: './data',
      jwtIssuer: ['a', 'b'],
      runWorker: true,
      metricsPort: 9464,
      metricsHost: '0.0.0.0',
    });
    expect(loadConfig({ RUN_WORKER: 'Off' }, { runWorker: true }).runWorker).toBe(false);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('lists every invalid variable at once, by name', () => {
    expect(
      problemsOf({
        PORT: '1e3',
        DB_POOL_SIZE: '0',
        LOG_LEVEL: 'loud',
        RUN_WORKER: 'ture',
        DATABASE_URL: 'mysql://x',
        ENFORCE_SESSION_GATED_CHAT: 'maybe',
      }),
    ).toEqual([
      'PORT must be a whole number from 0 to 65535 (got "1e3")',
      'DATABASE_URL must start with postgres:// or postgresql://',
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
      'RUN_WORKER must be one of true/false/1/0/yes/no/on/off (got "ture")',
      'DB_POOL_SIZE must be a whole number from 1 to 200 (got "0")',
      'ENFORCE_SESSION_GATED_CHAT must be one of true/false/1/0/yes/no/on/off (got "maybe")',
      'JWT_SECRET (or JWKS_URL) is required when DATABASE_URL is set',
    ]);
  });

  it.each(['+5', '5.0', '-1', '0x10', 'five'])('refuses %j where a whole number belongs', (v) => {
    expect(problemsOf({ SHUTDOWN_TIMEOUT_MS: v })).toEqual([`SHUTDOWN_TIMEOUT_MS must be a whole number from 100 to 120000 (got "${v}")`]);
  });

  it('checks secrets and the JWKS rules', () => {
    expect(problemsOf({ JWT_SECRET: 'short' })).toEqual(['JWT_SECRET must be at least 32 characters']);
    expect(problemsOf({ JWKS_URL: 'https://id.example/jwks' })).toEqual(['JWT_ISSUER and JWT_AUDIENCE are required with JWKS_URL']);
    expect(
      problemsOf({ DATABASE_URL: 'postgresql://db/x', JWKS_URL: 'https://id.example/jwks', JWT_ISSUER: 'i', JWT_AUDIENCE: 'a' }),
    ).toEqual([]);
  });
});
