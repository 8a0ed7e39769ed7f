import { positiveInt, print, withContext, type Command } from '../command.js';
import { deactivateUser } from '../../modules/users/service.js';

export const command: Command = {
  name: 'users:deactivate',
  summary: 'Deactivate a user: their tokens and sockets stop working at once; records stay',
  usage: 'sessiongate users:deactivate --user ID [--json]',
  options: {
    user: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const id = positiveInt(args.values['user'], 'user');
    // With PostgreSQL the revocation signal reaches every API process through the shared bus.
    const user = await withContext((ctx) => deactivateUser(ctx.db, ctx.bus, id, ctx.now()), { bus: true });
    if (args.values['json']) print(io, JSON.stringify({ id: user.id, deactivated_at: user.deactivated_at?.toISOString() ?? null }));
    else print(io, `user ${user.id} deactivated at ${user.deactivated_at?.toISOString() ?? '?'}`);
    return 0;
  },
};
