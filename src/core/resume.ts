/**
 * What the commands that go on after an interruption share (eden segment, embed, classify and
 * finetune --resume): the complete lines of a table written row by row, and the settings a resumed
 * run must match.
 */

/** `text` up to its last line break: a line cut off by the interruption (no newline yet) is not a row. */
export function completeLines(text: string): string {
  return text.slice(0, text.lastIndexOf('\n') + 1);
}

/**
 * The settings among `keys` in which `now` differs from `was`, said as "another a and b (then x, now
 * y; then ..., now ...)"; undefined when none does. An absent setting is 'the default'.
 */
export function changedSettings<T extends object>(was: T, now: T, keys: readonly (keyof T & string)[]): string | undefined {
  const show = (v: unknown): string => (v === undefined ? 'the default' : JSON.stringify(v));
  const changed = keys.filter((k) => JSON.stringify(was[k]) !== JSON.stringify(now[k]));
  if (!changed.length) return undefined;
  return `another ${changed.join(' and ')} (${changed.map((k) => `then ${show(was[k])}, now ${show(now[k])}`).join('; ')})`;
}
