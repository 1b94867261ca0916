import type { Command } from 'commander';
import { useBackend } from '../engine/backend.js';
import { loadEncoder } from '../models/encoder-file.js';
import { buildServer } from '../server/app.js';
import { loadSegmenter } from '../models/task-model-file.js';
import { resolveCheckpointPath } from '../train/checkpoint-diff.js';
import { parsePositiveInt } from './options.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('the anatomy explorer: a local web page showing decomposition, dense Eve similarity and cross-image matching for a checkpoint, and with --model the masks and cardiothoracic ratio of a segmentation model')
    .option('--checkpoint <ckpt>', "encoder or pretraining checkpoint, a run directory, or 'builtin' (default: the --model's encoder, else builtin)")
    .option('--model <file>', 'a segmentation model (eden finetune): show its masks and the cardiothoracic ratio of each image')
    .option('--data <dir>', 'folder of images to search for similar patches')
    .option('--port <n>', 'port (0 picks a free one)', (v) => (v === '0' ? 0 : parsePositiveInt(v)), 8080)
    .option('--host <address>', 'address to bind (default 127.0.0.1: this machine only)', '127.0.0.1')
    .option('--max-data-images <n>', 'images of --data to index', parsePositiveInt, 64)
    .action(async (opts: { checkpoint?: string; model?: string; data?: string; port: number; host: string; maxDataImages: number }) => {
      await useBackend('wasm');
      const segmenter = opts.model ? await loadSegmenter(opts.model) : undefined;
      const { encoder, meta } = await loadEncoder(await resolveCheckpointPath(opts.checkpoint ?? opts.model ?? 'builtin'));
      const app = await buildServer({ encoder, meta, segmenter, data: opts.data, maxDataImages: opts.maxDataImages, onLog: (l) => process.stderr.write(`${l}\n`) });
      const address = await app.listen({ port: opts.port, host: opts.host });
      process.stdout.write(`Eden anatomy explorer: ${address}/\n`);
      const stop = async (): Promise<void> => {
        await app.close();
        encoder.dispose();
        segmenter?.dispose();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      // Keep running until interrupted.
      await new Promise(() => undefined);
    });
}
