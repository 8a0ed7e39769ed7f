/**
 * `sessiongate <command> [options]`. Commands are the files in ./commands; `--help` on any
 * command prints its usage. Exit codes: 0 ok, 1 failure or bad usage, 2 refused/critical
 * (as each command documents).
 */
import { readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '../config/env.js';
import { DomainError } from '../lib/errors.js';
import { UsageError, type Command, type CommandIO } from './command.js';

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
  return `sessiongate ${cmd.name} — ${cmd.summary}\n\n${cmd.usage.trim()}\n\nOptions:\n${opts || '  (none)'}\n  --help\n`;
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
    out.stdout.write(`Usage: sessiongate <command> [options]\n\nCommands:\n${list}\n\nRun 'sessiongate <command> --help' for a command's options.\n`);
    return exit(name ? 0 : 1);
  }
  const cmd = commands.get(name);
  if (!cmd) {
    out.stderr.write(`Unknown command "${name}". Run 'sessiongate --help' for the list.\n`);
    return exit(1);
  }
  if (rest.includes('--help')) {
    out.stdout.write(helpFor(cmd));
    return exit(0);
  }
  try {
    const parsed = parseArgs({ args: rest, options: cmd.options, strict: true, allowPositionals: cmd.allowPositionals ?? false });
    return exit(await cmd.run({ values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals }, out));
  } catch (err) {
    if (err instanceof UsageError) {
      out.stderr.write(`${cmd.name}: ${err.message}\n`);
      return exit(err.exitCode);
    }
    if (err instanceof ConfigError) {
      out.stderr.write(`${err.message}\n`);
      return exit(1);
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      out.stderr.write(`${cmd.name}: ${err.message}\nRun 'sessiongate ${cmd.name} --help'.\n`);
      return exit(1);
    }
    if (err instanceof DomainError) {
      out.stderr.write(`${cmd.name}: ${err.code}: ${err.message}\n`);
      return exit(1);
    }
    out.stderr.write(`${cmd.name} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return exit(1);
  }
}
