/** Entry point of `npm run deploy` (dist/infra/deploy/cli.js); everything is in main.ts. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
