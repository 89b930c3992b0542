"""POST /api/v1/cases/{case_id}/title."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from agent_service.api.deps import RuntimeDep
from agent_service.domain.turns.title import generate_title
from fm_common.auth import CurrentPrincipal
from fm_common.contracts.agent import TitleRequest, TitleResponse

router = APIRouter(tags=["cases"])


@router.post(
    "/api/v1/cases/{case_id}/title",
    response_model=TitleResponse,
    responses={
        200: {
            "headers": {
                "x-title-source": {
                    "description": "generated (a new title was made and stored) or existing "
                    "(the case already had a title of its own; nothing changed)",
                    "schema": {"type": "string", "enum": ["generated", "existing"]},
                }
            }
        },
        404: {"description": "No such case"},
        422: {"description": "Too little context"},
    },
)
async def title(
    case_id: str,
    _principal: CurrentPrincipal,
    rt: RuntimeDep,
    response: Response,
    body: Annotated[TitleRequest | None, Body()] = None,
    force: Annotated[bool, Query()] = False,
) -> TitleResponse:
    """Generate a concise title from the case's conversation."""
    req = body or TitleRequest()
    if force:
        req = req.model_copy(update={"force": True})
    answer, source = await generate_title(rt, case_id, req)
    response.headers["x-title-source"] = source
    return answer
