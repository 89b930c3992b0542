// A small, dependency-free OpenAPI viewer: /docs works without any network beyond this server.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function schemaText(schema) {
  return JSON.stringify(schema, null, 2);
}

function operationView(path, method, op) {
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", {}, op.description));
  const params = op.parameters || [];
  if (params.length) {
    const list = el("ul");
    for (const p of params) {
      list.append(el("li", {}, `${p.name} (${p.in})${p.required ? " required" : ""}`));
    }
    body.append(el("h4", {}, "Parameters"), list);
  }
  const content = (op.requestBody && op.requestBody.content) || {};
  for (const [type, media] of Object.entries(content)) {
    body.append(el("h4", {}, `Request body: ${type}`), el("pre", {}, schemaText(media.schema)));
  }
  const responses = op.responses || {};
  const codes = el("ul");
  for (const [code, resp] of Object.entries(responses)) {
    codes.append(el("li", {}, `${code}: ${resp.description || ""}`));
  }
  body.append(el("h4", {}, "Responses"), codes);
  const summary = el(
    "summary",
    {},
    el("span", { class: `method ${method}` }, method.toUpperCase()),
    path,
    op.summary ? ` - ${op.summary}` : "",
    (op.security || []).length ? el("span", { class: "lock" }, "bearer token") : "",
  );
  return el("details", {}, summary, body);
}

function render(doc) {
  const main = document.getElementById("docs");
  main.replaceChildren();
  const unavailable = (doc.info && doc.info["x-services-unavailable"]) || [];
  if (unavailable.length) {
    main.append(el("p", {}, `Not reachable now (their routes are missing): ${unavailable.join(", ")}`));
  }
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    const group = path.startsWith("/api/v1/") ? path.split("/")[3] : "discovery";
    if (!groups.has(group)) groups.set(group, []);
    for (const [method, op] of Object.entries(item)) {
      if (typeof op === "object" && op !== null && method !== "parameters") {
        groups.get(group).push(operationView(path, method, op));
      }
    }
  }
  for (const [group, views] of groups) {
    main.append(el("h2", {}, group), ...views);
  }
  const schemas = (doc.components && doc.components.schemas) || {};
  const names = Object.keys(schemas).sort();
  if (names.length) {
    main.append(el("h2", {}, "schemas"));
    for (const name of names) {
      main.append(el("details", {}, el("summary", {}, name), el("pre", {}, schemaText(schemas[name]))));
    }
  }
}

fetch("/openapi.json", { headers: { Accept: "application/json" } })
  .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`status ${r.status}`))))
  .then(render)
  .catch((err) => {
    document.getElementById("docs").replaceChildren(el("p", {}, `Could not load the API: ${err}`));
  });
