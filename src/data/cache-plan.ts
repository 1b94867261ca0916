/**
 * Where pretraining keeps its decoded images. They are float32 at imageSize x imageSize, so the
 * default ('auto') is decided by size, before any image is decoded: in memory when they take at
 * most half of this machine's memory, else on disk when the cache folder's file system has room
 * (with a tenth to spare), else nowhere (each epoch decodes again). The paper preset (896 px) on
 * tens of thousands of radiographs needs hundreds of GB (75,000: 240.8 GB), which the memory cache,
 * the earlier default, would have tried to hold during the first pass. An explicit mode is kept,
 * with a warning when it will not fit. Where images are kept never changes them: the disk cache
 * holds the same float32 values, and 'none' decodes the same ones again.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EdenError } from '../core/errors.js';
import type { CacheMode } from './dataset.js';

export type CacheSetting = CacheMode | 'auto';

export interface CachePlan {
  mode: CacheMode;
  /** What the images (and masks) take, decoded: (images + masks) x side^2 x 4 bytes. */
  bytes: number;
  /** One line saying where the images are kept and why. */
  reason: string;
  /** Set when an explicit mode will not fit. */
  warning?: string;
}

export interface CacheMachine {
  /** Memory this process may use: the cgroup limit where there is one, else the machine's. */
  memoryBytes: number;
  /** Free bytes on the file system that holds the cache folder (undefined: unknown). */
  freeDiskBytes: number | undefined;
}

/** Memory this process may use: the cgroup limit where there is one, else the machine's. */
export function processMemoryBytes(): number {
  const constrained = process.constrainedMemory?.() ?? 0;
  return constrained > 0 ? Math.min(constrained, os.totalmem()) : os.totalmem();
}

/** The memory and disk of this machine, as planCache sees them. */
export async function thisMachine(cacheDir: string): Promise<CacheMachine> {
  return { memoryBytes: processMemoryBytes(), freeDiskBytes: await freeBytes(cacheDir) };
}

/**
 * The error for decoded images that would take more than `budget` bytes held in memory (fine-tuning
 * holds them all; by default half of processMemoryBytes, as planCache keeps a memory cache within).
 * `subject`: where and what ('DIR: 12 labelled images at 64 px'); `held`: how ('as float32').
 */
export function memoryRefusal(subject: string, bytes: number, held: string, budget: number, remedy: string): EdenError {
  return new EdenError('data', `${subject} take ${formatBytes(bytes)} in memory ${held}, more than the ${formatBytes(budget)} allowed (by default half of this machine's memory): ${remedy}`);
}

/** Free bytes where `dir` is or would be created (its nearest existing parent). */
export async function freeBytes(dir: string): Promise<number | undefined> {
  let at = path.resolve(dir);
  for (;;) {
    try {
      const s = await fs.statfs(at);
      return s.bavail * s.bsize;
    } catch {
      const parent = path.dirname(at);
      if (parent === at) return undefined;
      at = parent;
    }
  }
}

/**
 * Where `images` decoded at `side` x `side` (with `masks` masks among them all, 0 for unlabeled
 * folders) are kept under `setting`, on `machine`.
 */
export function planCache(setting: CacheSetting, o: { images: number; masks?: number; side: number; cacheDir: string }, machine: CacheMachine): CachePlan {
  const bytes = (o.images + (o.masks ?? 0)) * o.side * o.side * 4;
  const what = `${count(o.images, 'image')}${o.masks ? ` and ${count(o.masks, 'mask')}` : ''} at ${o.side} px take up to ${formatBytes(bytes)} as float32`;
  const memoryBudget = machine.memoryBytes / 2;
  const memoryFits = bytes <= memoryBudget;
  const diskFits = machine.freeDiskBytes === undefined || bytes * 1.1 <= machine.freeDiskBytes;
  const memory = `half of this machine's ${formatBytes(machine.memoryBytes)} of memory`;
  const disk = machine.freeDiskBytes === undefined ? '' : ` (${formatBytes(machine.freeDiskBytes)} free)`;
  switch (setting) {
    case 'auto':
      if (memoryFits) return { mode: 'memory', bytes, reason: `${what}: kept in memory` };
      if (diskFits) return { mode: 'disk', bytes, reason: `${what}, more than ${memory}: cached on disk in ${o.cacheDir}${disk}` };
      return { mode: 'none', bytes, reason: `${what}, more than ${memory} and than the disk holds${disk}: decoded again every epoch (a smaller --image-size keeps them)` };
    case 'memory':
      return {
        mode: 'memory',
        bytes,
        reason: `${what}: kept in memory (--cache memory)`,
        ...(memoryFits ? {} : { warning: `--cache memory: ${what}, more than ${memory}; the process may run out of memory while it decodes them (--cache auto chooses the disk or none)` }),
      };
    case 'disk':
      return {
        mode: 'disk',
        bytes,
        reason: `${what}: cached on disk in ${o.cacheDir}${disk} (--cache disk)`,
        ...(diskFits ? {} : { warning: `--cache disk: ${what}, more than ${o.cacheDir} has free${disk}; writing the cache may fail (--cache none decodes every epoch instead)` }),
      };
    case 'none':
      return { mode: 'none', bytes, reason: `${what}: decoded again every epoch (--cache none)` };
  }
}

function count(n: number, noun: string): string {
  return `${n.toLocaleString('en-US')} ${noun}${n === 1 ? '' : 's'}`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
