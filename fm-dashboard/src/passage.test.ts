import { describe, expect, it } from "vitest";
import { findPassage } from "./passage";

describe("findPassage", () => {
  const text = "# Etcd\n\nWhen etcd has no leader,\n  check the   network between members.\nThen restart.";

  it("finds a snippet whose whitespace differs from the document", () => {
    const span = findPassage(text, "etcd has no leader, check the network between members.");
    expect(span).not.toBeNull();
    expect(text.slice(...span!)).toContain("check the   network");
  });

  it("finds a snippet cut mid-word at both ends, highlighting exactly its text", () => {
    const span = findPassage(text, "tcd has no leader, check the netw");
    expect(text.slice(...span!)).toBe("tcd has no leader,\n  check the   netw");
  });

  it("returns null when the passage is absent", () => {
    expect(findPassage(text, "redis out of memory")).toBeNull();
  });
});

describe("findPassage with a chunk's heading trail", () => {
  it("skips a leading 'Doc > Section' line that is not in the document", () => {
    const doc = "# etcdNoLeader\n\n## Meaning\n\nThis alert is triggered when etcd cluster does not have a leader.";
    const chunk = "etcdNoLeader > Meaning\n\nThis alert is triggered when etcd cluster does not have a leader.";
    const span = findPassage(doc, chunk);
    expect(span).not.toBeNull();
    expect(doc.slice(...span!)).toBe("This alert is triggered when etcd cluster does not have a leader.");
  });
});
