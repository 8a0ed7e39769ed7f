/**
 * `sessiongate <command> [options]`. Commands are the files in ./commands; `--help` on any
 * command prints its usage. Exit codes, the same for every command:
 *   0 ok; 1 failed (checks: warning / not ready); 2 refused (checks: critical);
 *   3 did not run — unknown command or option, bad configuration, database unreachable.
 * With `--json`, an error that stops the command is also printed on stdout as
 * `{"error": {"code", "message", "exit_code"}}`, so a script reading stdout always gets JSON.
 */
import { readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '../config/env.js';
import { DomainError } from '../lib/errors.js';
import { CommandError, EXIT, EXIT_CODES_HELP, describeError, printJson, type Command, type CommandIO } from './command.js';

const commandsDir = new URL('./commands/', import.meta.url);

export async function loadCommands(): Promise<Map<string, Command>> {
  const files = readdirSync(commandsDir).filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts'));
  const commands = new Map<string, Command>();
  for (const f of files.sort()) {
    const mod = (await import(new URL(f, commandsDir).href)) as { command?: Command };
    if (mod.command) commands.set(mod.command.name, mod.command);
  }
  return commands;
}

function helpFor(cmd: Command): string {
  const opts = Object.entries(cmd.options)
    .map(([name, o]) => `  --${name}${o.type === 'string' ? ' <value>' : ''}`)
    .join('\n');
  return `sessiongate ${cmd.name} — ${cmd.summary}\n\n${cmd.usage.trim()}\n\nOptions:\n${opts || '  (none)'}\n  --help\n\n${EXIT_CODES_HELP}\n`;
}

export async function main(argv: string[], io?: CommandIO): Promise<number> {
  const out: CommandIO = io ?? {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    isTTY: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  };
  const exit = (code: number) => {
    if (!io) process.exitCode = code;
    return code;
  };
  const commands = await loadCommands();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    const list = [...commands.values()].map((c) => `  ${c.name.padEnd(36)} ${c.summary}`).join('\n');
    out.stdout.write(
      `Usage: sessiongate <command> [options]\n\nCommands:\n${list}\n\nRun 'sessiongate <command> --help' for a command's options.\n\n` +
        `Exit codes: 0 ok; 1 failed (checks: warning / not ready); 2 refused (checks: critical);\n` +
        `3 did not run (unknown command or option, bad configuration, database unreachable).\n`,
    );
    return exit(name ? EXIT.ok : EXIT.didNotRun);
  }
  const json = rest.includes('--json');
  /** Reports an error that stopped the command: stderr always, and a JSON object on stdout with --json. */
  const fail = (commandName: string, code: string, message: string, exitCode: number, hint = '') => {
    out.stderr.write(`${commandName}: ${message}\n${hint}`);
    if (json) printJson(out, { error: { code, message, exit_code: exitCode } });
    return exit(exitCode);
  };
  const cmd = commands.get(name);
  if (!cmd)
    return fail('sessiongate', 'UNKNOWN_COMMAND', `unknown command "${name}"`, EXIT.didNotRun, `Run 'sessiongate --help' for the list.\n`);
  if (rest.includes('--help')) {
    out.stdout.write(helpFor(cmd));
    return exit(EXIT.ok);
  }
  try {
    const parsed = parseArgs({ args: rest, options: cmd.options, strict: true, allowPositionals: cmd.allowPositionals ?? false });
    return exit(
      await cmd.run({ values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals }, out),
    );
  } catch (err) {
    if (err instanceof CommandError) return fail(cmd.name, err.code, err.message, err.exitCode);
    if (err instanceof ConfigError) return fail(cmd.name, 'CONFIG_INVALID', err.message, EXIT.didNotRun);
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      return fail(cmd.name, 'USAGE_ERROR', err.message, EXIT.didNotRun, `Run 'sessiongate ${cmd.name} --help'.\n`);
    }
    if (err instanceof DomainError) return fail(cmd.name, err.code, err.message, EXIT.failed);
    return fail(cmd.name, 'FAILED', `failed: ${describeError(err)}`, EXIT.failed);
  }
}
