// Wire shapes of the public API, named for the dashboard. Every shape the services declare
// comes from `schema.ts`, generated from the merged OpenAPI document (`openapi.json`) by
// `npm run gen:api`: never edit those two by hand. Only what the OpenAPI document leaves
// open (the capabilities object, a job's result) is written here.

import type { components } from "./schema";
import { caseStateValues, milestoneValues } from "./schema";

type Schemas = components["schemas"];

export type CaseState = Schemas["CaseState"];
export const CASE_STATES: readonly CaseState[] = caseStateValues;

/** The eight investigation milestones, in order (fm_common.contracts.case.MILESTONES). */
export type Milestone = Schemas["Milestone"];
export const MILESTONES: readonly Milestone[] = milestoneValues;

export type UserProfile = Schemas["UserProfile"];
export type AuthTokenResponse = Schemas["AuthTokenResponse"];
export type TokenRefreshResponse = Schemas["TokenRefreshResponse"];
export type AuthConfig = Schemas["AuthConfigResponse"];
export type SessionResponse = Schemas["SessionResponse"];

export type CaseSummary = Schemas["CaseSummary"];
export type CaseList = Schemas["CaseListResponse"];
export type CaseDetail = Schemas["CaseDetail"];
export type Message = Schemas["Message"];
export type MessagesPage = Schemas["CaseMessagesResponse"];

type UiInquiry = Schemas["CaseUIResponse_Inquiry"];
type UiInvestigating = Schemas["CaseUIResponse_Investigating"];
type UiResolved = Schemas["CaseUIResponse_Resolved"];
/** GET /cases/{id}/ui: one of three shapes by state; the panel reads any of their fields. */
export type CaseUI = (UiInquiry | UiInvestigating | UiResolved) &
  Partial<Omit<UiInquiry, "state">> &
  Partial<Omit<UiInvestigating, "state">> &
  Partial<Omit<UiResolved, "state">>;

export type SuggestedAction = Schemas["SuggestedActionResponse"];
export type Citation = Schemas["Citation"];
export type TurnResponse = Schemas["TurnResponse"];
export type InvestigationView = Schemas["InvestigationView"];

/** A job's status (turns and reports); `result` is the job kind's own shape. */
export type JobStatus<T = unknown> = Omit<Schemas["JobStatusResponse"], "result"> & {
  result?: T | null;
};

export type Report = Schemas["Report"];
export type KnowledgeDocument = Schemas["KnowledgeDocument"];
export type DocumentList = Schemas["DocumentPage"];
export type SearchResponse = Schemas["SearchResponse"];
export type LlmProvider = Schemas["LLMProviderInfo"];
export type HealthReport = Schemas["SystemHealth"];

/** GET /v1/meta/capabilities (API.md "Discovery"; the document leaves the object open). */
export interface Capabilities {
  deploymentMode?: string;
  kbManagement?: string;
  dashboardUrl?: string;
  features?: Record<string, boolean>;
  limits?: { maxFileBytes?: number; allowedExtensions?: string[]; maxDocuments?: number };
  llmProviders?: Array<LlmProvider | string>;
  embeddingModel?: string | { name?: string; dimensions?: number };
  version?: string;
  [key: string]: unknown;
}
