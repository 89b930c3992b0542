// Wire shapes of the public API (../shared/API.md, reference/faultmaven-openapi-core.json).
// Only the fields the dashboard reads are typed; the rest pass through untouched.

export type CaseState = "inquiry" | "investigating" | "resolved" | "closed";
export const CASE_STATES: CaseState[] = ["inquiry", "investigating", "resolved", "closed"];

export interface UserProfile {
  user_id: string;
  username: string;
  email: string;
  display_name: string;
  created_at: string;
  roles?: string[];
}

export interface AuthTokenResponse {
  access_token: string;
  token_type?: string;
  expires_in: number;
  refresh_token?: string | null;
  refresh_expires_in?: number;
  session_id: string;
  user: UserProfile;
}

export interface TokenRefreshResponse {
  access_token: string;
  expires_in: number;
  refresh_token: string;
}

export interface AuthConfig {
  auth_mode: string;
  supports_registration: boolean;
}

export interface SessionResponse {
  session_id: string;
  session_resumed?: boolean | null;
}

export interface CaseSummary {
  case_id: string;
  title: string;
  description: string;
  state: CaseState;
  created_at: string;
  updated_at: string;
  last_activity_at: string;
  current_turn: number;
  milestones_completed: number;
  total_milestones?: number;
  is_terminal: boolean;
  valid_next_states?: string[];
  is_archived?: boolean;
  archived_at?: string | null;
}

export interface CaseList {
  cases: CaseSummary[];
  total_count: number;
  limit: number;
  offset: number;
  has_more: boolean;
}

export interface CaseDetail extends Omit<CaseSummary, "milestones_completed"> {
  milestones_completed: string[];
  pending_milestones: string[];
  current_stage?: string | null;
  hypothesis_count?: number;
  evidence_count?: number;
  closure_reason?: string | null;
  version?: number;
}

export interface Message {
  message_id: string;
  turn_number: number;
  role: "user" | "assistant" | "system";
  content: string;
  created_at: string;
  metadata?: Record<string, unknown> | null;
}

export interface MessagesPage {
  messages: Message[];
  total_count: number;
  has_more: boolean;
  next_offset?: number | null;
}

export interface Hypothesis {
  hypothesis_id: string;
  text: string;
  likelihood: number;
  state: string;
  evidence_count: number;
}

export interface CaseUI {
  case_id: string;
  state: CaseState;
  title: string;
  current_turn: number;
  valid_next_states?: string[];
  active_hypotheses?: Hypothesis[];
  next_actions?: string[];
  problem_statement?: string | null;
  working_conclusion?: { summary: string; confidence: number } | null;
  inquiry?: { proposed_problem_statement?: string | null } | null;
  progress?: { current_stage?: string; completed_indicators?: string[] } | null;
  root_cause?: { description: string } | null;
  [key: string]: unknown;
}

export interface SuggestedAction {
  label: string;
  type: string;
  payload?: string | null;
  body?: string | null;
  intent?: Record<string, unknown> | null;
}

export interface Citation {
  document_id: string;
  title: string;
  chunk_id: string;
  snippet: string;
  score: number;
  scope: string;
}

export interface AttachmentResult {
  file_id: string;
  filename: string;
  file_size: number;
  processing_status: string;
  source_type: string;
}

export interface TurnResponse {
  agent_response: string;
  turn_number: number;
  milestones_completed: string[];
  case_state: CaseState;
  progress_made: boolean;
  attachments_processed?: AttachmentResult[];
  suggested_actions?: SuggestedAction[];
  citations?: Citation[];
  investigation?: { phase?: string; [key: string]: unknown } | null;
  redactions?: { count: number; kinds: string[] } | null;
}

export interface JobStatus<T = unknown> {
  status: "queued" | "running" | "completed" | "failed" | string;
  result?: T | null;
  error?: { message?: string } | string | null;
  progress?: number | null;
  [key: string]: unknown;
}

export interface Report {
  report_id: string;
  report_type?: string;
  title?: string;
  content?: string;
  markdown?: string;
  format?: string;
  created_at?: string;
  status?: string;
}

export interface KnowledgeDocument {
  document_id: string;
  title: string;
  content?: string;
  document_type: string;
  scope: string;
  status: string;
  error?: string | null;
  chunk_count?: number | null;
  embedding_model?: string | null;
  filename?: string | null;
  size_bytes?: number | null;
  tags?: string[];
  owner_id?: string | null;
  case_id?: string | null;
  created_at: string;
  updated_at: string;
  metadata?: Record<string, unknown> | null;
}

export interface DocumentList {
  documents: KnowledgeDocument[];
  total_count: number;
  limit?: number;
  offset?: number;
  has_more?: boolean;
}

export interface SearchResult {
  document_id: string;
  title: string;
  chunk_id: string;
  content: string;
  score: number;
  scope: string;
  metadata?: Record<string, unknown>;
}

export interface SearchResponse {
  results: SearchResult[];
  took_ms?: number;
}

export interface LlmProvider {
  name?: string;
  provider?: string;
  model?: string;
  kind?: string;
  type?: string;
  base_url?: string;
  [key: string]: unknown;
}

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

export interface HealthReport {
  status: "healthy" | "degraded" | "unhealthy" | string;
  services?: Record<string, { status: string; latency_ms?: number; [key: string]: unknown }>;
  [key: string]: unknown;
}
