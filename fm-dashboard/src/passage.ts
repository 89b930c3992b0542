// Locating a cited passage inside a document's text.

/** Where `passage` occurs in `text`, ignoring differences in whitespace. */
export function findPassage(text: string, passage: string): [number, number] | null {
  const words = passage.trim().split(/\s+/).filter(Boolean);
  if (!words.length) return null;
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  // A snippet may be cut mid-word at either end; match its whole words first.
  for (const take of [escaped, escaped.slice(1, -1)]) {
    if (!take.length) continue;
    const m = new RegExp(take.join("\\s+")).exec(text);
    if (m) return [m.index, m.index + m[0].length];
  }
  return null;
}
