#!/usr/bin/env node
/** The `eden` executable: runs the command line (program.ts) and exits with its status. */
import { main } from './program.js';

// A reader that stops early (`eden match --json | head`) is no error of the command's: its output is
// dropped and the work goes on (a training run must not die because its log's reader did).
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
  });
}
const code = await main(process.argv);
// process.exit does not wait for a pipe to drain: `eden match --json | jq` would get the report cut
// at 64 KiB. An empty write's callback runs once everything written before it has been handed over.
await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
process.exit(code);
