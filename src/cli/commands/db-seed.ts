import { print, printJson, withContext, type Command } from '../command.js';
import { signToken } from '../../lib/auth.js';
import { seedDemo } from '../seed.js';

export const command: Command = {
  name: 'db:seed',
  summary: 'Create demo users, plans, subscriptions and appointments (one due now); print tokens',
  usage: 'sessiongate db:seed [--json]\n\nRe-running prints fresh tokens for the existing demo users.',
  options: { json: { type: 'boolean' } },
  async run(args, io) {
    const out = await withContext(async (ctx) => {
      const result = await seedDemo(ctx.db, ctx.now());
      const tokens: Record<string, string> = {};
      if (ctx.jwtSecret) {
        for (const [key, u] of Object.entries(result.users)) tokens[key] = await signToken(ctx.jwtSecret, { sub: u.id, role: u.role }, 12 * 3600);
      }
      return { result, tokens };
    });
    const { result, tokens } = out;
    if (args.values['json']) {
      printJson(io, {
        created: result.created,
        users: Object.fromEntries(Object.entries(result.users).map(([k, u]) => [k, { id: u.id, role: u.role, name: u.name }])),
        appointments: result.appointments,
        tokens,
      });
      return 0;
    }
    print(io, result.created ? 'Seeded demo data.' : 'Demo data already present.');
    for (const [key, u] of Object.entries(result.users)) print(io, `${key.padEnd(13)} id=${u.id} ${u.role.padEnd(8)} ${u.name}`);
    if (result.appointments.dueNow) print(io, `appointment due now: ${result.appointments.dueNow}`);
    print(io, '\nTokens (12 h):');
    for (const [key, t] of Object.entries(tokens)) print(io, `export ${key.toUpperCase()}_TOKEN=${t}`);
    return 0;
  },
};
