import { print, requireString, UsageError, withContext, type Command } from '../command.js';
import { createUser } from '../../modules/users/service.js';
import type { Role } from '../../db/types.js';

export const command: Command = {
  name: 'users:create',
  summary: 'Create a user and print its id',
  usage: 'sessiongate users:create --role patient|doctor|admin --name "Ada" [--country Malawi] [--timezone Africa/Blantyre] [--json]',
  options: {
    role: { type: 'string' },
    name: { type: 'string' },
    country: { type: 'string' },
    timezone: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const role = requireString(args, 'role');
    if (!['patient', 'doctor', 'admin'].includes(role)) throw new UsageError('--role must be patient, doctor or admin');
    const user = await withContext((ctx) =>
      createUser(ctx.db, {
        role: role as Role,
        name: requireString(args, 'name'),
        country: (args.values['country'] as string | undefined) ?? null,
        timezone: args.values['timezone'] as string | undefined,
      }),
    );
    if (args.values['json']) print(io, JSON.stringify({ id: user.id, role: user.role, name: user.name }));
    else print(io, String(user.id));
    return 0;
  },
};
