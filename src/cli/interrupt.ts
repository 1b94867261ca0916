/**
 * Ctrl-C during a long training run: the first saves the state at the current step and lets the
 * run stop cleanly (it resumes from there); a second quits at once, without saving.
 */
export function interruptOnSigint(saving: string): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = (): void => {
    if (++interrupts === 1) {
      process.stderr.write(`\neden: interrupted: saving ${saving} at the current step (Ctrl-C again to quit without saving)\n`);
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);
  return { signal: controller.signal, release: () => process.off('SIGINT', onSigint) };
}
