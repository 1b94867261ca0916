/**
 * The pretrained Eve shipped with Eden: an Adam ResNet-18 (its model card is MODEL_CARD.md beside
 * the file). `builtin` names it wherever a checkpoint is accepted; commands that need an encoder
 * and are given none use it.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdenError } from '../core/errors.js';

export const BUILTIN_NAME = 'builtin';

/** <package root>/models/eve-resnet18.safetensors (the same from src/ and dist/). */
export function builtinModelPath(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'eve-resnet18.safetensors');
}

export function hasBuiltinModel(): boolean {
  return existsSync(builtinModelPath());
}

/** `builtin` -> the shipped file; anything else unchanged. */
export function resolveModelSpec(spec: string): string {
  if (spec !== BUILTIN_NAME) return spec;
  const file = builtinModelPath();
  if (!existsSync(file)) throw new EdenError('checkpoint', `the pretrained Eve (${file}) is not part of this installation; give a checkpoint file instead`);
  return file;
}
