import type { Command } from 'commander';
import { formatInspectReport, inspectDataset } from '../data/inspect.js';
import { createProgress } from './progress.js';
import { MASKS_HELP, parseList, rleOrderOption, maskRowsOption } from './options.js';
import type { RunOrder } from '../data/mask-table.js';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('decode every image of one or more datasets and summarise them: sizes, bit depths, structures, labels, unusable files')
    .argument('<paths...>', 'dataset folders (a folder of images, or images/ + masks/<structure>/) or image files')
    .option('--json', 'print the report as JSON')
    .option('--labels <csv>', 'CSV manifest with labels (default: labels.csv in the folder, if present)')
    .option('--structures <names>', 'comma-separated mask structures to consider', parseList)
    .option('--masks <dir|table>', MASKS_HELP)
    .addOption(rleOrderOption())
    .addOption(maskRowsOption())
    .action(async (paths: string[], opts: { json?: boolean; labels?: string; structures?: string[]; masks?: string; rleOrder?: RunOrder; maskRows?: string }) => {
      const progress = createProgress('decoding');
      const report = await inspectDataset(paths, { labels: opts.labels, structures: opts.structures, masks: opts.masks, rleOrder: opts.rleOrder, maskRows: opts.maskRows, onProgress: (d, t) => progress.update(d, t) });
      progress.stop();
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatInspectReport(report)}\n`);
      if (report.images === 0) {
        process.exitCode = 1;
        process.stderr.write(`eden: no usable images in ${paths.join(', ')}\n`);
      }
    });
}
