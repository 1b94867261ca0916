/**
 * One field of a CSV that Eden writes (RFC 4180): quoted, its quotes doubled, when it holds a quote,
 * a comma or a line break; numbers with 6 decimals unless integral; nothing for undefined or null.
 */
export function csvField(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(6)) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
