// schema.ts is generated from openapi.json (npm run gen:api) and committed: this fails when
// it is stale. That openapi.json matches the services is checked on the Python side
// (tests/test_dashboard_api_types.py).
import openapiTS, { COMMENT_HEADER, astToString } from "openapi-typescript";
import { describe, expect, it } from "vitest";
import documentText from "./openapi.json?raw";
import committed from "./schema.ts?raw";
import { CASE_STATES, MILESTONES } from "./types";

// The same options as the gen:api script's openapi-typescript command line.
const OPTIONS = { enumValues: true, silent: true };

describe("generated API types", () => {
  it("schema.ts is what openapi-typescript makes of openapi.json", async () => {
    const fresh = COMMENT_HEADER + astToString(await openapiTS(JSON.parse(documentText), OPTIONS));
    expect(committed === fresh, "src/api/schema.ts is stale: run `npm run gen:api`").toBe(true);
  });

  it("takes the milestones and case states from the API's own enums", () => {
    expect(MILESTONES).toHaveLength(8);
    expect(MILESTONES[0]).toBe("symptom_verified");
    expect(MILESTONES.at(-1)).toBe("solution_verified");
    expect(CASE_STATES).toEqual(["inquiry", "investigating", "resolved", "closed"]);
  });
});
