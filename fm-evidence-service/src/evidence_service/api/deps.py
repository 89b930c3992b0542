"""Annotated dependencies of the evidence routes."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from fastapi import Depends, Request

from evidence_service.domain.evidence.flows import Uploads
from evidence_service.domain.evidence.service import EvidenceService
from fm_common.db import DbSession

# Committed before the response is sent (see fm_common.db.DbSession).
SessionDep: TypeAlias = DbSession


def get_evidence_service(request: Request, session: SessionDep) -> EvidenceService:
    state = request.app.state
    return EvidenceService(
        session, state.file_store, state.case_gate, state.settings.retry_after_seconds
    )


def get_uploads(request: Request) -> Uploads:
    return request.app.state.uploads


EvidenceServiceDep = Annotated[EvidenceService, Depends(get_evidence_service)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
