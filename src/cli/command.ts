/**
 * The CLI's command contract. One file per command in `commands/`, discovered at run time, so
 * adding a command is adding a file. Commands parse strictly (unknown options are errors) and
 * return their exit code; they call service functions and print — no business logic here.
 */
import type { ParseArgsConfig } from 'node:util';
import type { Readable, Writable } from 'node:stream';
import pino from 'pino';
import { effectiveEnv, loadConfig } from '../config/env.js';
import { closeContext, createContext, type AppContext } from '../context.js';
import { createBusFor } from '../realtime/create-bus.js';

export interface CommandIO {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  /** Whether a person is at the terminal (confirmations, progress bars). */
  isTTY: boolean;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export interface Command {
  name: string;
  summary: string;
  /** Extra help text: usage examples, option descriptions. */
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  allowPositionals?: boolean;
  run(args: ParsedArgs, io: CommandIO): Promise<number>;
}

/** An error the user can fix: printed without a stack, exit code given. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Opens the application context (database migrated) for a command and always closes it. */
/** `bus: true` connects the cross-process event bus (PostgreSQL), for commands whose events API processes must see. */
export async function withContext<T>(fn: (ctx: AppContext) => Promise<T>, opts: { role?: string; bus?: boolean } = {}): Promise<T> {
  const config = loadConfig(effectiveEnv());
  // Commands print their own output on stdout; logs go to stderr, quiet unless LOG_LEVEL says.
  const level = process.env['LOG_LEVEL'] ?? 'warn';
  const logger = pino({ level, base: { role: opts.role ?? 'cli' } }, pino.destination(2));
  const ctx = await createContext(config, { role: opts.role ?? 'cli', logger, ...(opts.bus ? { bus: createBusFor } : {}) });
  try {
    return await fn(ctx);
  } finally {
    await closeContext(ctx);
  }
}

export const print = (io: CommandIO, line = '') => io.stdout.write(`${line}\n`);
export const printJson = (io: CommandIO, value: unknown) => io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

export function requireString(args: ParsedArgs, name: string): string {
  const v = args.values[name];
  if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`--${name} is required`);
  return v.trim();
}

export function positiveInt(value: string | boolean | undefined, name: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || !/^[1-9]\d{0,15}$/.test(value)) {
    throw new UsageError(`--${name} must be a positive whole number`);
  }
  return Number(value);
}

/** The options of the commands that run one job once: `--limit N`, `--verbose`, `--json`. */
export const JOB_RUN_OPTIONS: Command['options'] = { limit: { type: 'string' }, verbose: { type: 'boolean' }, json: { type: 'boolean' } };

export function jobRunFlags(args: ParsedArgs): { limit: number | undefined; verbose: boolean; json: boolean } {
  return {
    limit: args.values['limit'] === undefined ? undefined : positiveInt(args.values['limit'], 'limit'),
    verbose: Boolean(args.values['verbose']),
    json: Boolean(args.values['json']),
  };
}
