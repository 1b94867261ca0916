import type { Command } from 'commander';
import { useBackend } from '../engine/backend.js';
import { loadEncoder } from '../models/encoder-file.js';
import { buildServer } from '../server/app.js';
import { resolveCheckpointPath } from '../train/checkpoint-diff.js';
import { parsePositiveInt } from './options.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('the anatomy explorer: a local web page showing decomposition, dense Eve similarity and cross-image matching for a checkpoint')
    .requiredOption('--checkpoint <ckpt>', 'encoder or pretraining checkpoint, or a run directory')
    .option('--data <dir>', 'folder of images to search for similar patches')
    .option('--port <n>', 'port (0 picks a free one)', (v) => (v === '0' ? 0 : parsePositiveInt(v)), 8080)
    .option('--host <address>', 'address to bind (default 127.0.0.1: this machine only)', '127.0.0.1')
    .option('--max-data-images <n>', 'images of --data to index', parsePositiveInt, 64)
    .action(async (opts: { checkpoint: string; data?: string; port: number; host: string; maxDataImages: number }) => {
      await useBackend('wasm');
      const { encoder, meta } = await loadEncoder(await resolveCheckpointPath(opts.checkpoint));
      const app = await buildServer({ encoder, meta, data: opts.data, maxDataImages: opts.maxDataImages, onLog: (l) => process.stderr.write(`${l}\n`) });
      const address = await app.listen({ port: opts.port, host: opts.host });
      process.stdout.write(`Eden anatomy explorer: ${address}/\n`);
      const stop = async (): Promise<void> => {
        await app.close();
        encoder.dispose();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      // Keep running until interrupted.
      await new Promise(() => undefined);
    });
}
