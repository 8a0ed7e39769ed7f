import { readFileSync } from 'node:fs';
import { print, printJson, requireString, UsageError, withContext, type Command } from '../command.js';
import { importPlans, importUsers, parseExport } from '../../modules/users/import.js';

export const command: Command = {
  name: 'users:import',
  summary: 'Import users, doctors and subscriptions from the existing backend, keeping their ids',
  usage: `sessiongate users:import --file users.json [--format json|csv] [--dry-run] [--json]

Reads an export of the existing backend (format and example: docs/migration.md) and creates or
updates each user with its id, role, name, country and time zone, and its subscriptions with the
credits they have left (idempotent by payment reference). Running it again changes nothing.
Each record is imported on its own: a bad one is reported and leaves nothing behind.
--format defaults to the file's extension (.csv → csv, otherwise json).
--dry-run checks and reports everything, then rolls every record back.
Exit code: 0 when every record imported, 1 when any failed (or the file cannot be read).`,
  options: {
    file: { type: 'string' },
    format: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const file = requireString(args, 'file');
    const format = (args.values['format'] as string | undefined) ?? (file.toLowerCase().endsWith('.csv') ? 'csv' : 'json');
    if (format !== 'json' && format !== 'csv') throw new UsageError('--format must be json or csv');
    let content: string;
    try {
      content = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    let parsed: ReturnType<typeof parseExport>;
    try {
      parsed = parseExport(content, format);
    } catch (err) {
      throw new UsageError(`${file} is not a valid ${format} export: ${err instanceof Error ? err.message : String(err)}`);
    }
    const dryRun = Boolean(args.values['dry-run']);
    const report = await withContext(async (ctx) => {
      if (!dryRun) await importPlans(ctx.db, parsed.plans);
      return importUsers(ctx.db, parsed.users, { dryRun, now: ctx.now() });
    });
    if (args.values['json']) {
      printJson(io, report);
    } else {
      for (const r of report.rows.filter((x) => x.status === 'failed')) {
        io.stderr.write(`row ${r.row}${r.id ? ` (id ${r.id})` : ''}: ${r.error!.error_code}: ${r.error!.message}\n`);
      }
      const subs = report.rows.flatMap((r) => r.subscriptions);
      print(
        io,
        `${dryRun ? 'Dry run (nothing written): ' : ''}${report.total} record(s): ${report.created} created, ${report.updated} updated, ` +
          `${report.unchanged} unchanged, ${report.failed} failed; subscriptions: ${subs.filter((s) => s.status === 'created').length} created, ` +
          `${subs.filter((s) => s.status === 'unchanged').length} unchanged, ${subs.filter((s) => s.status === 'skipped_expired').length} skipped (expired).`,
      );
    }
    return report.failed > 0 ? 1 : 0;
  },
};
