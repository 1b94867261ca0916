import type { Command } from 'commander';
import { diffCheckpoints, formatCheckpointDiff } from '../train/checkpoint-diff.js';
import { checkpointMeta, CHECKPOINT_FORMAT } from '../train/checkpoint.js';
import { resolveCheckpointPath } from '../train/checkpoint-diff.js';
import { EdenError } from '../core/errors.js';
import { loadTensorFile, type TensorFile } from '../engine/tensor-file.js';
import { ENCODER_FORMAT, type EncoderFileMeta } from '../models/encoder-file.js';
import { SEGMENTER_FORMAT, taskModelMeta } from '../models/task-model-file.js';
import { FINETUNE_STATE_FORMAT, finetuneStateMeta } from '../apply/finetune-state.js';

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
    .description("describe an Eden file: a pretraining checkpoint's position, config and best validation loss; an encoder's architecture and source; a fine-tuned model's task, training and validation scores; an interrupted fine-tuning's training state")
    .argument('<file>', "checkpoint, run directory, encoder file, 'builtin', or a model from eden finetune")
    .action(async (c: string) => {
      const file = await resolveCheckpointPath(c);
      process.stdout.write(`${describeEdenFile(file, await loadTensorFile(file)).join('\n')}\n`);
    });
  for (const c of cmd.commands) c.exitOverride();
  cmd.exitOverride();
}

/** What `eden checkpoint show` prints for each kind of Eden file, one fact per line. */
export function describeEdenFile(file: string, content: TensorFile): string[] {
  const format = content.metadata['format'];
  const tensors = `tensors: ${content.tensors.size} (${formatCount([...content.tensors.values()].reduce((n, t) => n + t.data.length, 0))} values)`;
  const task = taskModelMeta(content);
  if (task) {
    const t = task.training;
    const what = task.format === SEGMENTER_FORMAT ? `segmentation of ${task.structures!.join(', ')} (U-Net)` : `classification into ${task.classes!.join(', ')}`;
    return [
      `format: ${task.format} (Eden ${task.edenVersion}, ${task.createdAt})`,
      `task: ${what}`,
      `model: ${task.backbone.name} width ${task.backbone.width}, input ${task.inputSize} px, intensity ${task.intensity.mode ?? 'auto'}`,
      `trained on: ${t.data}${typeof t.masks === 'string' ? ` with the masks in ${t.masks}` : ''}, ${t.images} images (${t.validationImages} for validation), ${t.steps} steps (kept step ${t.bestStep})${t.mode ? `, mode ${t.mode}` : ''}, seed ${t.seed}`,
      `started from: ${t.startedFrom}`,
      `validation: ${Object.entries(task.validation).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ') || 'none'}`,
      tensors,
    ];
  }
  if (format === ENCODER_FORMAT) {
    const meta = JSON.parse(content.metadata['eden'] ?? '{}') as EncoderFileMeta;
    return [
      `format: ${format}`,
      `model: ${meta.args.backbone} width ${meta.args.width}, ${meta.hasHead ? `projection head to ${meta.args.projectionDim}` : 'no projection head'}${meta.inputSize ? `, trained on ${meta.inputSize} px views` : ''}`,
      `source: ${meta.source}`,
      tensors,
    ];
  }
  if (format === CHECKPOINT_FORMAT) {
    const meta = checkpointMeta(content, file);
    const { position, best, config } = meta;
    return [
      `format: ${meta.format} (Eden ${meta.edenVersion}, ${meta.createdAt}, backend ${meta.backend})`,
      `next step: stage ${position.stage + 1}, epoch ${position.epoch + 1}, batch ${position.batch} (${position.globalStep} steps done)`,
      `model: ${config.model.backbone} width ${config.model.width}, views ${config.views.size} px, levels ${config.curriculum.levels.join(',')}`,
      `best validation loss: ${best ? `${best.valLoss.toFixed(4)} (stage ${best.stage + 1}, step ${best.globalStep})` : 'none'}`,
      `${tensors}; images: ${meta.split.train.length} train, ${meta.split.val.length} validation`,
    ];
  }
  if (format === FINETUNE_STATE_FORMAT) {
    const meta = finetuneStateMeta(content, file);
    const { position: p, settings: o } = meta;
    return [
      `format: ${meta.format} (Eden ${meta.edenVersion}, ${meta.createdAt}, backend ${meta.backend})`,
      `training state of: ${meta.out} (eden finetune --resume goes on from it)`,
      `next step: ${p.step + 1} of at most ${o.steps}; best validation ${o.task === 'segment' ? 'Dice' : 'mean AUC'} ${p.best === null ? 'none yet' : `${p.best.toFixed(4)} (step ${p.bestStep}), ${p.sinceBest} check(s) since`}`,
      `trained on: ${o.data}${o.masks ? ` with the masks in ${o.masks}` : ''}, ${meta.files.train.length} images (${meta.files.val.length} for validation), ${o.task === 'segment' ? `segmentation, mode ${o.mode}` : 'classification'}, ${o.size} px, seed ${o.seed}`,
      tensors,
    ];
  }
  throw new EdenError('checkpoint', `${file} is not an Eden file (format '${format ?? 'none'}'): eden checkpoint show reads pretraining checkpoints, encoders, fine-tuned models and their training states`);
}

function formatCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}
