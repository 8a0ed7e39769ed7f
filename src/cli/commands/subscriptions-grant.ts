import { positiveInt, print, requireString, UsageError, withContext, type Command } from '../command.js';
import { findPlan, grantSubscription } from '../../modules/users/service.js';

export const command: Command = {
  name: 'subscriptions:grant',
  summary: 'Grant a plan to a patient (idempotent by payment reference)',
  usage: 'sessiongate subscriptions:grant --user 12 --plan Basic --reference PAY-123 [--json]',
  options: { user: { type: 'string' }, plan: { type: 'string' }, reference: { type: 'string' }, json: { type: 'boolean' } },
  async run(args, io) {
    const userId = positiveInt(args.values['user'], 'user');
    const planRef = requireString(args, 'plan');
    const reference = requireString(args, 'reference');
    const result = await withContext(async (ctx) => {
      const plan = await findPlan(ctx.db, planRef);
      if (!plan) throw new UsageError(`No plan "${planRef}"`);
      return grantSubscription(ctx.db, { user_id: userId, plan_id: plan.id, payment_reference: reference }, ctx.now());
    });
    const s = result.subscription;
    if (args.values['json']) print(io, JSON.stringify({ id: s.id, created: result.created, expires_at: s.expires_at }));
    else print(io, `${result.created ? 'Granted' : 'Already granted'}: subscription ${s.id} (expires ${s.expires_at.toISOString()})`);
    return 0;
  },
};
