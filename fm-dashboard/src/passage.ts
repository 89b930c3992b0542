// Locating a cited passage inside a document's text.

function wordsRegex(words: string[]): RegExp {
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(escaped.join("\\s+"));
}

/**
 * Where `passage` occurs in `text`, ignoring differences in whitespace. A passage may
 * start with a heading trail the chunker added ("Doc > Section") and may be cut
 * mid-word at either end, so leading lines and the edge words are dropped in turn.
 */
export function findPassage(text: string, passage: string): [number, number] | null {
  const lines = passage.trim().split(/\r?\n/);
  for (let skip = 0; skip < lines.length; skip++) {
    const words = lines.slice(skip).join(" ").split(/\s+/).filter(Boolean);
    if (words.length === 0) continue;
    for (const take of [words, words.slice(1, -1)]) {
      if (take.length === 0 || (skip > 0 && take.length < 4)) continue;
      const m = wordsRegex(take).exec(text);
      if (m) return [m.index, m.index + m[0].length];
    }
  }
  return null;
}
