#!/usr/bin/env node
/** The `eden` executable: runs the command line (program.ts) and exits with its status. */
import { main } from './program.js';

const code = await main(process.argv);
process.exit(code);
