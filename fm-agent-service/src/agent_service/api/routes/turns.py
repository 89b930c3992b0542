"""Turns of a case: POST /api/v1/cases/{case_id}/turns and the queued-turn job route."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent_service.api.deps import RuntimeDep
from agent_service.api.routes.turn_checks import parse_intent_data, refuse_nul
from agent_service.api.sse import choose_mode, framed
from agent_service.domain.turns.context import FileInput, TurnInput
from agent_service.domain.turns.flows import submit_turn
from agent_service.domain.turns.service import get_turn_job
from fm_common.auth import CurrentPrincipal
from fm_common.contracts.agent import TurnJobStatus, TurnResponse
from fm_common.errors import PayloadTooLarge

router = APIRouter(tags=["turns"])

ERRORS: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued: poll the Location (a TurnJobStatus)"},
    404: {"description": "No such case of this user"},
    409: {"description": "Idempotency-Key reused for another request, or still in progress"},
    413: {"description": "Input larger than the caps"},
    422: {"description": "Nothing to answer, or a malformed field"},
    503: {"description": "No provider answered, or a dependency is down (Retry-After)"},
}


def _blank(value: str | None) -> str | None:
    return value if value is not None and value.strip() != "" else None


async def _read(files: list[UploadFile], limit: int) -> list[FileInput]:
    out = []
    for f in files:
        if not f.filename and not f.size:
            continue
        data = await f.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"{f.filename} is larger than {limit} bytes.")
        out.append(
            FileInput(
                filename=f.filename or "upload.bin",
                content_type=f.content_type or "application/octet-stream",
                data=data,
            )
        )
    return out


@router.post(
    "/api/v1/cases/{case_id}/turns",
    response_model=TurnResponse,
    responses=ERRORS,
    summary="Submit a turn (200 TurnResponse, SSE with Accept: text/event-stream, or 202)",
)
async def submit(
    case_id: str,
    principal: CurrentPrincipal,
    rt: RuntimeDep,
    query: Annotated[str | None, Form()] = None,
    pasted_content: Annotated[str | None, Form()] = None,
    files: Annotated[list[UploadFile], File()] = [],  # noqa: B006 - FastAPI form default
    intent_type: Annotated[str | None, Form()] = None,
    intent_data: Annotated[str | None, Form()] = None,
    input_type: Annotated[str | None, Form()] = None,
    source_url: Annotated[str | None, Form()] = None,
    observed_at: Annotated[str | None, Form()] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    accept: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    """Ask the agent a question in a case, with optional pasted content and files."""
    refuse_nul(
        query=query,
        pasted_content=pasted_content,
        intent_type=intent_type,
        input_type=input_type,
        source_url=source_url,
        observed_at=observed_at,
    )
    data: dict[str, Any] | None = None
    if _blank(intent_data):
        data = parse_intent_data(intent_data)  # type: ignore[arg-type]
    if len(files) > rt.settings.max_files:
        raise PayloadTooLarge(f"At most {rt.settings.max_files} files per turn.")
    inp = TurnInput(
        query=_blank(query),
        pasted_content=_blank(pasted_content),
        files=await _read(files, rt.settings.max_file_bytes),
        intent_type=_blank(intent_type),
        intent_data=data,
        input_type=_blank(input_type),
        source_url=_blank(source_url),
        observed_at=_blank(observed_at),
    )
    outcome = await submit_turn(
        rt,
        principal,
        case_id,
        inp,
        idempotency_key=idempotency_key,
        mode=choose_mode(rt, accept, prefer),
    )
    if outcome.events is not None:
        return StreamingResponse(
            framed(outcome.events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers)


@router.get(
    "/api/v1/cases/{case_id}/turns/jobs/{job_id}",
    response_model=TurnJobStatus,
    responses={404: {"description": "No such job of this user"}},
)
async def turn_job(
    case_id: str, job_id: str, principal: CurrentPrincipal, rt: RuntimeDep
) -> TurnJobStatus:
    """The status of a queued turn: queued, running, completed (with result) or failed."""
    return await get_turn_job(rt, principal.user_id, case_id, job_id)
