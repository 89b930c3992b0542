"""Ingestion job status."""

from __future__ import annotations

from fastapi import APIRouter

from fm_common.auth import CurrentPrincipal
from fm_common.contracts.knowledge import KnowledgeJob
from fm_common.errors import NotFound
from fm_common.jobs import JobStore
from knowledge_service.api.deps import RedisDep

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])


@router.get(
    "/jobs/{job_id}",
    response_model=KnowledgeJob,
    responses={404: {"description": "No such job of the caller's"}},
)
async def get_job(job_id: str, principal: CurrentPrincipal, redis: RedisDep) -> KnowledgeJob:
    """An ingestion job's status, progress, attempts and error."""
    record = await JobStore(redis).get_owned(job_id, principal.user_id)
    if record is None or not record.kind.startswith("knowledge."):
        raise NotFound("Job not found.", code="JOB_NOT_FOUND")
    return KnowledgeJob(
        job_id=record.job_id,
        kind=record.kind,
        status=record.status,
        document_id=record.resource_id,
        progress=record.progress,
        attempts=record.attempts,
        error=record.error.message if record.error else None,
        error_code=record.error.code if record.error else None,
        result=record.result,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
