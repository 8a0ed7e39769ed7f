import { positiveInt, print, UsageError, withContext, type Command } from '../command.js';
import { parseTtl, signToken } from '../../lib/auth.js';

export const command: Command = {
  name: 'auth:token',
  summary: 'Print a JWT for a user (local/dev use)',
  usage: 'sessiongate auth:token --user 12 [--ttl 1h]   (ttl: 3600, 30m, 12h, 7d)',
  options: { user: { type: 'string' }, ttl: { type: 'string' } },
  async run(args, io) {
    const userId = positiveInt(args.values['user'], 'user');
    const ttl = parseTtl((args.values['ttl'] as string | undefined) ?? '1h');
    if (ttl === null) throw new UsageError('--ttl must look like 3600, 30m, 12h or 7d');
    const token = await withContext(async (ctx) => {
      if (!ctx.jwtSecret) throw new UsageError('auth:token needs JWT_SECRET (tokens from a JWKS issuer are minted there)');
      const user = await ctx.db.selectFrom('users').select(['id', 'role']).where('id', '=', userId).executeTakeFirst();
      if (!user) throw new UsageError(`No user ${userId}`);
      return signToken(ctx.jwtSecret, { sub: user.id, role: user.role }, ttl);
    });
    print(io, token);
    return 0;
  },
};
