import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { effectiveEnv, loadConfig } from '../../config/env.js';
import { PID_FILE, holderAlive, isAlive, readLock } from '../../db/data-dir-lock.js';
import { CommandError, EXIT, positiveInt, print, type Command } from '../command.js';

export const command: Command = {
  name: 'flags:reload',
  summary: 'Make the running server re-read .env and the feature flags (sends it SIGHUP)',
  usage: `sessiongate flags:reload [--pid N]

Sends SIGHUP to the server that owns DATA_DIR (its pid is in DATA_DIR/sessiongate.pid, written by
\`npm start\`, \`sessiongate serve\` or \`sessiongate worker\` when it owns the embedded database).
With PostgreSQL, or to reach another process, give --pid. The server logs the flags it now uses
("feature flags" line); \`sessiongate flags:show\` prints what .env says.`,
  options: { pid: { type: 'string' } },
  async run(args, io) {
    let pid: number;
    if (args.values['pid'] !== undefined) pid = positiveInt(args.values['pid'], 'pid');
    else {
      const config = loadConfig(effectiveEnv());
      const file = join(config.dataDir, PID_FILE);
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        throw new CommandError('NO_SERVER', `no server owns ${config.dataDir} (no ${file}); with PostgreSQL give --pid`, EXIT.failed);
      }
      pid = Number(text.trim());
      // The pid file outlives a crash; the lock says whether that pid is still the same server
      // (after a restart of the machine the pid may name an unrelated process: never signal it).
      const holder = readLock(config.dataDir);
      if (holder?.pid !== pid || !holderAlive(holder)) {
        throw new CommandError('NO_SERVER', `no server owns ${config.dataDir} (${file} names process ${pid}, which is not its owner)`, EXIT.failed);
      }
    }
    if (!isAlive(pid)) throw new CommandError('NO_SERVER', `process ${pid} is not running`, EXIT.failed);
    process.kill(pid, 'SIGHUP');
    print(io, `sent SIGHUP to process ${pid}: it re-reads .env and logs the flags it uses`);
    return EXIT.ok;
  },
};
