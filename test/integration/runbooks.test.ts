/**
 * The runbooks cannot drift from the CLI: every `sessiongate …` command in a code block of
 * docs/runbooks/*.md must exist, parse with the command's own options, and run — read-only reports
 * for real against a fresh database, `appointments:recover-sessions` as its dry run, anything that
 * changes data as `--help`. Links between the runbooks (and the alert rules' runbook_url) must
 * point at files and anchors that exist.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCommands, main } from '../../src/cli/index.js';
import type { CommandIO } from '../../src/cli/command.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { cloneTestDatabase, type TestDatabase } from '../helpers/db.js';

const ROOT = join(import.meta.dirname, '..', '..');
const RUNBOOKS = join(ROOT, 'docs', 'runbooks');
const files = readdirSync(RUNBOOKS)
  .filter((f) => f.endsWith('.md'))
  .sort();

/** Reports that only read: run for real. */
const READ_ONLY = new Set(['appointments:monitor-sessions', 'rollout:status', 'flags:show', 'billing:audit']);
/** Dry run by default: run without the flags that make it write. */
const DRY_RUN_BY_DEFAULT: Record<string, string[]> = { 'appointments:recover-sessions': ['--execute', '--yes'] };

interface DocCommand {
  file: string;
  line: string;
  argv: string[];
}

/** Lines of fenced code blocks (``` or ~~~, indented or not). */
function codeLines(markdown: string): string[] {
  const out: string[] = [];
  let fence: string | null = null;
  for (const raw of markdown.split('\n')) {
    const line = raw.trim();
    const marker = /^(```|~~~)/.exec(line.replace(/^\d+\.\s+/, ''))?.[1];
    if (marker && (fence === null || marker === fence)) {
      fence = fence === null ? marker : null;
      continue;
    }
    if (fence !== null) out.push(line);
  }
  return out;
}

/** A minimal POSIX-shell word splitter (quotes and backslashes), enough for documented commands. */
function shellWords(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** `sessiongate …` invocations of a code line: split at `&&`, `||`, `;`, `|`; comments dropped. */
function commandsIn(line: string): string[][] {
  const noComment = line.replace(/(^|\s)#.*$/, '').replace(/^\$\s+/, '');
  return noComment
    .split(/&&|\|\||;|\|/)
    .map((seg) => shellWords(seg.trim()))
    .map((w) => (w[0] === 'npx' ? w.slice(1) : w))
    .filter((w) => w[0] === 'sessiongate')
    .map((w) => w.slice(1));
}

const documented: DocCommand[] = files.flatMap((file) =>
  codeLines(readFileSync(join(RUNBOOKS, file), 'utf8')).flatMap((line) => commandsIn(line).map((argv) => ({ file, line, argv }))),
);
const unique = [...new Map(documented.map((c) => [c.argv.join(' '), c])).values()];

function captureIO(): CommandIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
    stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
    stdin: Readable.from([]),
    isTTY: false,
    out: () => out,
    err: () => err,
  };
}

let database: TestDatabase;
const saved: Record<string, string | undefined> = {};
const ENV_KEYS = [
  'DATABASE_URL',
  'DATA_DIR',
  'JWT_SECRET',
  'LOG_LEVEL',
  'ENFORCE_SESSION_GATED_CHAT',
  'ENFORCE_SESSION_GATED_BILLING',
  'DISABLE_LEGACY_APPOINTMENT_TRIGGERS',
  'ALLOW_LEGACY_APPOINTMENT_CHAT',
];

beforeAll(async () => {
  database = await cloneTestDatabase();
  for (const k of ENV_KEYS) saved[k] = process.env[k];
  process.env['DATABASE_URL'] = database.databaseUrl ?? '';
  process.env['DATA_DIR'] = database.dataDir || '/nonexistent';
  process.env['JWT_SECRET'] = TEST_JWT_SECRET;
  process.env['LOG_LEVEL'] = 'error';
  for (const k of ENV_KEYS.slice(4)) delete process.env[k];
});
afterAll(async () => {
  for (const k of ENV_KEYS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  await database?.drop();
});

describe('runbook commands', () => {
  it('the runbooks use the operations commands', () => {
    const names = new Set(documented.map((c) => c.argv[0]));
    for (const n of [
      'appointments:monitor-sessions',
      'appointments:auto-start-sessions',
      'appointments:recover-sessions',
      'rollout:status',
      'flags:show',
      'billing:audit',
    ]) {
      expect(names, n).toContain(n);
    }
    expect(documented.some((c) => c.argv.includes('--execute'))).toBe(true);
  });

  it.each(unique.map((c) => [c.argv.join(' '), c] as const))('sessiongate %s', async (_label, doc) => {
    const [name, ...rest] = doc.argv;
    const commands = await loadCommands();
    const cmd = commands.get(name!);
    expect(cmd, `${doc.file}: "${doc.line}" — no command ${name} in src/cli/commands`).toBeDefined();
    // The documented options must be the command's options.
    expect(
      () => parseArgs({ args: rest, options: cmd!.options, strict: true, allowPositionals: cmd!.allowPositionals ?? false }),
      `${doc.file}: "${doc.line}"`,
    ).not.toThrow();

    let argv: string[];
    if (READ_ONLY.has(name!)) argv = doc.argv;
    else if (DRY_RUN_BY_DEFAULT[name!]) argv = doc.argv.filter((a) => !DRY_RUN_BY_DEFAULT[name!]!.includes(a));
    else argv = [name!, '--help'];
    const io = captureIO();
    const code = await main(argv, io);
    expect(code, `${argv.join(' ')}\nstdout: ${io.out()}\nstderr: ${io.err()}`).toBe(0);
    if (argv.includes('--json')) expect(() => JSON.parse(io.out())).not.toThrow();
  });
});

// --- links

/** GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(file, 'utf8');
  const anchors = new Set<string>();
  for (const m of text.matchAll(/^#{1,6}\s+(.+)$/gm)) anchors.add(slug(m[1]!));
  for (const m of text.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]!);
  return anchors;
}

describe('runbook links', () => {
  it('every relative link between runbooks points at an existing file and anchor', () => {
    const broken: string[] = [];
    for (const file of files) {
      const text = readFileSync(join(RUNBOOKS, file), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/i.test(target)) continue;
        const [path, anchor] = target.split('#');
        const abs = path ? resolve(RUNBOOKS, path) : join(RUNBOOKS, file);
        if (!existsSync(abs)) broken.push(`${file}: ${target} (no file)`);
        else if (anchor && abs.endsWith('.md') && !anchorsOf(abs).has(anchor)) broken.push(`${file}: ${target} (no anchor)`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('every alert has a section whose anchor is its lower-case name, and its runbook_url points there', () => {
    const rules = readFileSync(join(ROOT, 'ops', 'prometheus', 'alerts.yml'), 'utf8');
    const alerts = [...rules.matchAll(/^\s*-\s*alert:\s*(\S+)/gm)].map((m) => m[1]!);
    const urls = [...rules.matchAll(/runbook_url:\s*"?([^"\s]+)"?/g)].map((m) => m[1]!);
    expect(alerts.length).toBeGreaterThanOrEqual(8);
    expect(urls).toHaveLength(alerts.length);
    const anchors = anchorsOf(join(RUNBOOKS, 'alerts.md'));
    for (const [i, alert] of alerts.entries()) {
      expect(anchors, alert).toContain(alert.toLowerCase());
      expect(urls[i]).toBe(`docs/runbooks/alerts.md#${alert.toLowerCase()}`);
      expect(existsSync(join(ROOT, dirname(urls[i]!), 'alerts.md'))).toBe(true);
    }
  });
});
