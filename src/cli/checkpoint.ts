import type { Command } from 'commander';
import { diffCheckpoints, formatCheckpointDiff } from '../train/checkpoint-diff.js';
import { readCheckpoint } from '../train/checkpoint.js';
import { resolveCheckpointPath } from '../train/checkpoint-diff.js';

export function registerCheckpoint(program: Command): void {
  const cmd = program.command('checkpoint').description('look into and compare checkpoints');
  cmd
    .command('diff')
    .description('compare two checkpoints (or the last checkpoints of two run directories) tensor by tensor')
    .argument('<a>', 'checkpoint file or run directory')
    .argument('<b>', 'checkpoint file or run directory')
    .action(async (a: string, b: string) => {
      process.stdout.write(`${formatCheckpointDiff(await diffCheckpoints(a, b))}\n`);
    });
  cmd
    .command('show')
    .description("print a checkpoint's position, config and best validation loss")
    .argument('<checkpoint>', 'checkpoint file or run directory')
    .action(async (c: string) => {
      const { meta, content } = await readCheckpoint(await resolveCheckpointPath(c));
      const { position, best, config } = meta;
      process.stdout.write(
        [
          `format: ${meta.format} (Eden ${meta.edenVersion}, ${meta.createdAt}, backend ${meta.backend})`,
          `next step: stage ${position.stage + 1}, epoch ${position.epoch + 1}, batch ${position.batch} (${position.globalStep} steps done)`,
          `model: ${config.model.backbone} width ${config.model.width}, views ${config.views.size} px, levels ${config.curriculum.levels.join(',')}`,
          `best validation loss: ${best ? `${best.valLoss.toFixed(4)} (stage ${best.stage + 1}, step ${best.globalStep})` : 'none'}`,
          `tensors: ${content.tensors.size}; images: ${meta.split.train.length} train, ${meta.split.val.length} validation`,
        ].join('\n') + '\n',
      );
    });
  for (const c of cmd.commands) c.exitOverride();
  cmd.exitOverride();
}
