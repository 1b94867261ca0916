/** Progress on long work: a bar on a TTY, occasional plain lines otherwise (CI logs). */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, payload?: Record<string, string | number>): void;
  stop(): void;
}

export function createProgress(label: string, stream: NodeJS.WriteStream = process.stderr, format?: string): Progress {
  if (stream.isTTY && !process.env['CI']) {
    const bar = new cliProgress.SingleBar(
      { format: format ?? `${label} [{bar}] {value}/{total} {percentage}% | ETA {eta_formatted}`, stream, hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(done, total, payload) {
        if (!started) {
          bar.start(total, done, payload);
          started = true;
        }
        bar.update(done, payload);
      },
      stop() {
        if (started) bar.stop();
        // A later update starts the bar again (e.g. after an epoch summary line).
        started = false;
      },
    };
  }
  // Off a TTY: a line every 10 s, and a final one if any was printed (short jobs stay quiet).
  let lastPrinted = Date.now();
  let printed = false;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - lastPrinted > 10000 || (done === total && printed)) {
        stream.write(`${label}: ${done}/${total}\n`);
        lastPrinted = now;
        printed = true;
      }
    },
    stop() {},
  };
}
