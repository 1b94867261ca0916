/**
 * Every error Eden raises is an EdenError with a kind, so callers (and the CLI) can tell a bad
 * config from bad data without parsing messages. Messages say what came in, what was expected,
 * and how to fix it.
 */
export type EdenErrorKind = 'config' | 'data' | 'checkpoint' | 'engine' | 'non-finite-loss' | 'interrupted';

export class EdenError extends Error {
  readonly kind: EdenErrorKind;
  constructor(kind: EdenErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EdenError';
    this.kind = kind;
  }
}

export function configError(message: string): EdenError {
  return new EdenError('config', message);
}

export function dataError(message: string, cause?: unknown): EdenError {
  return new EdenError('data', message, { cause });
}

/** One-line description of an unknown thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}
