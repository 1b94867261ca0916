/**
 * Saving and restoring a model's variables together with its optimizer's state, without
 * tfjs-node. A model here is a VariableSet (see models/layers.ts); the optimizer is any TF.js
 * optimizer, whose slots (`getWeights`) are stored under `optimizer/<slot name>`, mapped back to
 * our parameter names so the file does not depend on TF.js's global variable naming.
 */
import * as tf from '@tensorflow/tfjs';
import { EdenError } from '../core/errors.js';
import { loadTensorFile, saveTensorFile, type TensorFile } from './tensor-file.js';

const OPT = 'optimizer/';

type NamedTensor = { name: string; tensor: tf.Tensor };

/** What saveModel needs of a model: its named variables (models/layers.ts's VariableSet is one). */
export interface VariableSet {
  readonly variables: Map<string, tf.Variable>;
}


/** Optimizer slot names look like `<variable name>/<slot>` (e.g. `conv1.weight#3/momentum`). */
function renameSlot(slot: string, map: Map<string, string>): string {
  for (const [from, to] of map) {
    if (slot === from || slot.startsWith(`${from}/`)) return to + slot.slice(from.length);
  }
  return slot;
}

export async function saveModel(file: string, stores: Record<string, VariableSet>, options: { optimizer?: tf.Optimizer; metadata?: Record<string, unknown> } = {}): Promise<void> {
  const tensors = new Map<string, tf.Tensor>();
  const toOurs = new Map<string, string>();
  for (const [prefix, store] of Object.entries(stores)) {
    for (const [name, v] of store.variables) {
      tensors.set(`${prefix}/${name}`, v);
      toOurs.set(v.name, `${prefix}/${name}`);
    }
  }
  const slots: NamedTensor[] = options.optimizer ? await options.optimizer.getWeights() : [];
  for (const slot of slots) tensors.set(OPT + renameSlot(slot.name, toOurs), slot.tensor);
  const metadata = { format: 'eden-model-1', eden: JSON.stringify(options.metadata ?? {}) };
  try {
    await saveTensorFile(file, tensors, metadata);
  } finally {
    // getWeights() returns fresh tensors for the iteration count; variables are not ours to dispose.
    for (const slot of slots) if (!(slot.tensor instanceof tf.Variable)) slot.tensor.dispose();
  }
}

/**
 * Load a file written by saveModel into existing stores (shapes must match) and, if given, the
 * optimizer. Returns the saved metadata.
 */
export async function loadModel(file: string, stores: Record<string, VariableSet>, options: { optimizer?: tf.Optimizer } = {}): Promise<Record<string, unknown>> {
  const content: TensorFile = await loadTensorFile(file);
  for (const [prefix, store] of Object.entries(stores)) assignStore(content, prefix, store, file);
  if (options.optimizer) {
    const toTf = new Map<string, string>();
    for (const [prefix, store] of Object.entries(stores)) {
      for (const [ours, v] of store.variables) toTf.set(`${prefix}/${ours}`, v.name);
    }
    const named: NamedTensor[] = [];
    for (const [name, rec] of content.tensors) {
      if (!name.startsWith(OPT)) continue;
      named.push({ name: renameSlot(name.slice(OPT.length), toTf), tensor: tf.tensor(rec.data, rec.shape, rec.dtype) });
    }
    if (named.length === 0) throw new EdenError('checkpoint', `${file} holds no optimizer state`);
    await options.optimizer.setWeights(named);
    for (const n of named) n.tensor.dispose();
  }
  return JSON.parse(content.metadata['eden'] ?? '{}') as Record<string, unknown>;
}

function assignStore(content: TensorFile, prefix: string, store: VariableSet, file: string): void {
  const missing: string[] = [];
  for (const [name, v] of store.variables) {
    const rec = content.tensors.get(`${prefix}/${name}`);
    if (!rec) {
      missing.push(name);
      continue;
    }
    if (rec.shape.join(',') !== v.shape.join(',')) {
      throw new EdenError('checkpoint', `${file}: '${prefix}/${name}' has shape [${rec.shape}], the model expects [${v.shape}] (different architecture or width?)`);
    }
    tf.tidy(() => v.assign(tf.tensor(rec.data, rec.shape, rec.dtype)));
  }
  if (missing.length) {
    throw new EdenError('checkpoint', `${file}: ${missing.length} parameters of '${prefix}' are missing (first: ${missing.slice(0, 3).join(', ')})`);
  }
}
