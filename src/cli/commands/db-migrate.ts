import { print, withContext, type Command } from '../command.js';

export const command: Command = {
  name: 'db:migrate',
  summary: 'Apply pending database migrations (safe with several processes at once)',
  usage: 'sessiongate db:migrate [--json]',
  options: { json: { type: 'boolean' } },
  async run(args, io) {
    // createContext migrates under the advisory lock; what it applied is in schema_migrations.
    const names = await withContext(async (ctx) => {
      const rows = await ctx.db
        .selectFrom('schema_migrations' as never)
        .select(['name' as never])
        .execute();
      return (rows as { name: string }[]).map((r) => r.name);
    });
    if (args.values['json']) print(io, JSON.stringify({ applied: names }));
    else print(io, `Database is up to date (${names.length} migrations applied).`);
    return 0;
  },
};
