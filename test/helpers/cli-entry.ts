// Runs the CLI from source (tests must not depend on a possibly stale dist/ build).
import { main } from '../../src/cli/index.js';

await main(process.argv.slice(2));
