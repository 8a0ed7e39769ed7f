import { print, printJson, withContext, type Command } from '../command.js';
import { auditBilling } from '../../modules/billing/audit.js';

export const command: Command = {
  name: 'billing:audit',
  summary: 'Recompute wallets and credits from the ledger and check every unit was charged once',
  usage: `sessiongate billing:audit [--json]

Read-only. Recomputes every doctor wallet balance and every subscription's remaining credits
from the ledger, checks that no unit is charged twice, that every ended session is settled and
billed the units it costs, and that no doctor credit lacks its patient debit.
Exit code: 0 when the books balance, 1 on any finding.`,
  options: { json: { type: 'boolean' } },
  async run(args, io) {
    const report = await withContext((ctx) => auditBilling(ctx.db));
    if (args.values['json']) {
      printJson(io, report);
    } else {
      const c = report.checked;
      print(
        io,
        `Checked ${c.ledger_entries} ledger entries, ${c.wallets} wallets, ${c.subscriptions} subscriptions, ${c.sessions} sessions.`,
      );
      for (const f of report.findings) print(io, `FINDING [${f.check}] ${f.message}`);
      print(io, report.ok ? 'OK: the books balance.' : `${report.findings.length} finding(s).`);
    }
    return report.ok ? 0 : 1;
  },
};
