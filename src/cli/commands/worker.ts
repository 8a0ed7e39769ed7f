import type { Command } from '../command.js';
import { runWorkerProcess } from '../../server.js';

export const command: Command = {
  name: 'worker',
  summary: 'Run the scheduler (auto-start, expiry, billing, legacy triggers); any number may run at once',
  usage: 'sessiongate worker',
  options: {},
  async run() {
    await runWorkerProcess();
    return 0;
  },
};
