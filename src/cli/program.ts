/**
 * The `eden` command line: argv -> options -> library API. Errors become one line on stderr and
 * a non-zero status (main.ts is the executable that calls `main` and exits with it).
 */
import { Command, CommanderError } from 'commander';
import { EdenError } from '../core/errors.js';
import { VERSION } from '../version.js';
import { registerInspect } from './inspect.js';
import { registerPretrain } from './pretrain.js';
import { registerDecompose } from './decompose.js';
import { registerCheckpoint } from './checkpoint.js';
import { registerInterop } from './interop.js';
import { registerEvaluate } from './evaluate.js';
import { registerServe } from './serve.js';
import { registerFinetune } from './finetune.js';
import { registerSegment } from './segment.js';
import { registerMatch } from './match.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('eden')
    .description('Anatomy-aware self-supervised pretraining (Adam) and embeddings (Eve) for medical images')
    .version(VERSION)
    .exitOverride();
  registerInspect(program);
  registerPretrain(program);
  registerDecompose(program);
  registerCheckpoint(program);
  registerInterop(program);
  registerEvaluate(program);
  registerFinetune(program);
  registerSegment(program);
  registerMatch(program);
  registerServe(program);
  for (const c of program.commands) c.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its one-line message (or the help / version text).
      return err.exitCode;
    }
    if (err instanceof EdenError) {
      process.stderr.write(`eden: ${err.message}\n`);
      // 130: stopped by Ctrl-C (128 + SIGINT), as a shell reports it; the message says how to go on.
      return err.kind === 'config' ? 2 : err.kind === 'interrupted' ? 130 : 1;
    }
    process.stderr.write(`eden: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 70;
  }
}
