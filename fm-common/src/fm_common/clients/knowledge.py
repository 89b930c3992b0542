"""Typed client of the knowledge service (search for the agent, case cleanup)."""

from __future__ import annotations

from fm_common.clients.base import ServiceClient
from fm_common.contracts.knowledge import (
    KnowledgeDocument,
    Scope,
    SearchMode,
    SearchRequest,
    SearchResponse,
)


class KnowledgeClient(ServiceClient):
    """Calls the knowledge service with the caller's bearer token (forwarded by default)."""

    service = "knowledge"

    async def search(
        self,
        query: str | SearchRequest,
        *,
        limit: int = 10,
        scopes: list[Scope] | None = None,
        case_id: str | None = None,
        document_type: str | None = None,
        tags: list[str] | None = None,
        similarity_threshold: float | None = None,
        mode: SearchMode = "semantic",
        token: str | None = None,
        timeout: float | None = None,
    ) -> SearchResponse:
        """Search the collections the caller may read (`POST /api/v1/knowledge/search`)."""
        request = (
            query
            if isinstance(query, SearchRequest)
            else SearchRequest(
                query=query,
                limit=limit,
                scopes=scopes,
                case_id=case_id,
                document_type=document_type,
                tags=tags,
                similarity_threshold=similarity_threshold,
                mode=mode,
            )
        )
        body = request.model_dump(mode="json", exclude_none=True)
        resp = await self.request(
            "POST", "/api/v1/knowledge/search", json=body, token=token, timeout=timeout
        )
        return SearchResponse.model_validate_json(resp.content)

    async def get_document(
        self, document_id: str, *, token: str | None = None
    ) -> KnowledgeDocument:
        return await self.get_model(
            f"/api/v1/knowledge/documents/{document_id}", KnowledgeDocument, token=token
        )

    async def delete_case_collection(self, case_id: str, *, token: str | None = None) -> None:
        """Drop a case's collection and its documents (204, idempotent, owner-scoped)."""
        await self.request("DELETE", f"/internal/v1/collections/case/{case_id}", token=token)
