"""Annotated dependencies of the evidence routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from evidence_service.domain.evidence.flows import Uploads
from evidence_service.domain.evidence.service import EvidenceService
from fm_common.db import session_dependency

SessionDep = Annotated[AsyncSession, Depends(session_dependency)]


def get_evidence_service(request: Request, session: SessionDep) -> EvidenceService:
    state = request.app.state
    return EvidenceService(session, state.file_store, state.case_gate)


def get_uploads(request: Request) -> Uploads:
    return request.app.state.uploads


EvidenceServiceDep = Annotated[EvidenceService, Depends(get_evidence_service)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
