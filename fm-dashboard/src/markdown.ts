// Model answers and reports are Markdown from an untrusted source: render with marked,
// then sanitize with DOMPurify so no script, handler or remote resource survives.

import DOMPurify from "dompurify";
import { marked } from "marked";

let hooked = false;

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      const href = node.getAttribute("href") ?? "";
      if (/^https?:\/\//i.test(href)) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    }
    // An image from another host would be a request to it: drop its source, keep alt.
    if (node.tagName === "IMG") {
      const src = node.getAttribute("src") ?? "";
      node.removeAttribute("srcset");
      if (!src.startsWith("/") || src.startsWith("//")) {
        node.removeAttribute("src");
        node.setAttribute("alt", `${node.getAttribute("alt") || "image"} (${src})`);
      }
    }
  });
}

export function renderMarkdown(source: string): string {
  installHooks();
  const html = marked.parse(source, { async: false, gfm: true, breaks: false }) as string;
  return DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
    FORBID_ATTR: ["style"],
  });
}
