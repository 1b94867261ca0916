/**
 * The momentum teacher (METHOD.md §3): xi <- m * xi + (1 - m) * theta, over the parameters of
 * matching names. Batch-norm running statistics are not averaged: the teacher keeps its own, from
 * its own forward passes (as MoCo's key encoder does).
 */
import * as tf from '@tensorflow/tfjs';

export function updateMomentum(teacher: Map<string, tf.Variable>, student: Map<string, tf.Variable>, momentum: number): void {
  if (momentum === 1) return;
  tf.tidy(() => {
    for (const [name, t] of teacher) {
      if (!t.trainable) continue;
      const s = student.get(name);
      if (!s) throw new Error(`teacher parameter '${name}' has no student counterpart`);
      t.assign(momentum === 0 ? s.clone() : tf.add(tf.mul(t, momentum), tf.mul(s, 1 - momentum)));
    }
  });
}

/** Copy every variable (parameters and buffers) of `from` into `to`. */
export function copyVariables(to: Map<string, tf.Variable>, from: Map<string, tf.Variable>): void {
  tf.tidy(() => {
    for (const [name, t] of to) {
      const s = from.get(name);
      if (!s) throw new Error(`no variable '${name}' to copy from`);
      t.assign(s.clone());
    }
  });
}
