#!/usr/bin/env node
// The `sessiongate` command. Runs the compiled CLI (built by `npm ci` through the `prepare`
// script); in a checkout without dist/ it falls back to compiling the TypeScript on the fly.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/index.js', import.meta.url);
let cli;
if (existsSync(compiled)) {
  cli = await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(new URL('../src/cli/index.ts', import.meta.url).href);
}
await cli.main(process.argv.slice(2));
