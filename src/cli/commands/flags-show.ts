import { print, type Command } from '../command.js';
import { effectiveEnv } from '../../config/env.js';
import { FlagService } from '../../config/flags.js';
import { FLAG_NAMES, PHASE_NAMES } from '../../config/flag-values.js';

export const command: Command = {
  name: 'flags:show',
  summary: 'Show the effective feature flags and the rollout phase',
  usage: 'sessiongate flags:show [--json]',
  options: { json: { type: 'boolean' } },
  async run(args, io) {
    const flags = new FlagService(() => effectiveEnv());
    const values = await flags.current();
    const phase = flags.phase();
    if (args.values['json']) {
      print(io, JSON.stringify({ flags: values, phase, phase_name: PHASE_NAMES[phase] }));
    } else {
      for (const name of FLAG_NAMES) print(io, `${name.padEnd(38)} ${values[name]}`);
      print(io, `rollout phase: ${phase} (${PHASE_NAMES[phase]})`);
    }
    return 0;
  },
};
