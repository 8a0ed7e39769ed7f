import type { Command } from '../command.js';
import { runServer } from '../../server.js';

export const command: Command = {
  name: 'serve',
  summary: 'Run the HTTP API and WebSocket gateway (set RUN_WORKER=true to also run the worker)',
  usage: 'sessiongate serve\n\nConfigured by the environment / .env: PORT, HOST, DATABASE_URL, JWT_SECRET, …',
  options: {},
  async run() {
    await runServer({ role: 'serve', runWorkerDefault: false });
    return 0;
  },
};
