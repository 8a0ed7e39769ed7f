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

/**
 * Exit codes shared by every command, so a script can tell "the check said warning" from "the
 * check did not run". Commands document their own 1 and 2 (failure / warning, refused / critical).
 */
export const EXIT = {
  ok: 0,
  /** The command ran and something failed (or, for checks, a warning / "not ready"). */
  failed: 1,
  /** The command ran and refused (or, for checks, critical). */
  refused: 2,
  /** The command did not run: bad option, bad configuration, no database. */
  didNotRun: 3,
} as const;

/** Printed at the end of every `--help`. */
export const EXIT_CODES_HELP = 'Exit code 3 always means the command did not run (bad option, bad configuration, database unreachable).';

/**
 * An error the command reports without a stack: a stable `code` (printed in `--json` error
 * objects) and the exit code.
 */
export class CommandError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** A bad option or argument the user can fix: the command did not run (exit 3). */
export class UsageError extends CommandError {
  constructor(message: string, exitCode: number = EXIT.didNotRun) {
    super('USAGE_ERROR', message, exitCode);
  }
}

/** The database could not be opened: the command did not run (exit 3). */
export class DatabaseUnavailableError extends CommandError {
  constructor(message: string) {
    super('DATABASE_UNAVAILABLE', message, EXIT.didNotRun);
  }
}

/**
 * Opens the application context (database migrated) for a command and always closes it. Events
 * the command publishes travel on the same cross-process bus as the worker's (PostgreSQL
 * LISTEN/NOTIFY), so they reach the clients connected to the API processes. A database that
 * cannot be opened is a DatabaseUnavailableError (exit 3: the command did not run).
 */
/** (`bus` is accepted for the commands that ask for it; every command now publishes on the shared bus.) */
export async function withContext<T>(fn: (ctx: AppContext) => Promise<T>, opts: { role?: string; bus?: boolean } = {}): Promise<T> {
  const config = loadConfig(effectiveEnv());
  // Commands print their own output on stdout; logs go to stderr, quiet unless LOG_LEVEL says.
  const level = process.env['LOG_LEVEL'] ?? 'warn';
  const logger = pino({ level, base: { role: opts.role ?? 'cli' } }, pino.destination(2));
  let ctx: AppContext;
  try {
    ctx = await createContext(config, { role: opts.role ?? 'cli', logger, bus: createBusFor });
  } catch (err) {
    throw new DatabaseUnavailableError(`cannot open the database: ${describeError(err)}`);
  }
  try {
    return await fn(ctx);
  } finally {
    await closeContext(ctx);
  }
}

/** A one-line description of an error (an ECONNREFUSED AggregateError has an empty message). */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const inner = err instanceof AggregateError ? err.errors.map((e) => describeError(e)).join('; ') : '';
  return [err.message, inner, typeof code === 'string' && !err.message.includes(code) ? code : ''].filter(Boolean).join(' — ') || err.name;
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
